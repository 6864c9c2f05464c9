/**
 * Request validation against openapi.yaml's component schemas (JSON Schema 2020-12, as
 * OpenAPI 3.1 uses). Bodies are validated as sent; path and query parameters arrive as
 * strings, so their validator coerces them to the declared types.
 */
import type { ErrorObject, ValidateFunction } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";
import type { FastifySchemaCompiler } from "fastify";
import { AppError } from "../core/errors.ts";

export interface SpecValidators {
  compiler: FastifySchemaCompiler<unknown>;
  /** The validator of one component schema by name, e.g. `Id`, `Metadata`. */
  component(name: string): ValidateFunction;
}

function makeAjv(schemas: readonly object[], coerce: boolean): Ajv2020 {
  const ajv = new Ajv2020({
    allErrors: false,
    useDefaults: true,
    coerceTypes: coerce ? "array" : false,
    removeAdditional: false,
    allowUnionTypes: true,
    strict: true,
  });
  for (const schema of schemas) ajv.addSchema(schema);
  return ajv;
}

export function createValidators(schemas: readonly object[]): SpecValidators {
  const bodies = makeAjv(schemas, false);
  const parameters = makeAjv(schemas, true);
  return {
    compiler: ({ schema, httpPart }) =>
      (httpPart === "body" ? bodies : parameters).compile(schema as object),
    component(name) {
      const validate = bodies.getSchema(name);
      if (validate === undefined) throw new Error(`openapi.yaml has no component schema ${name}`);
      return validate;
    },
  };
}

/** One line naming the failing location, e.g. `body/k must be <= 1000`. */
export function describeValidationError(context: string, errors: readonly ErrorObject[]): string {
  const first = errors[0];
  if (first === undefined) return `${context} is invalid`;
  let where = `${context}${first.instancePath}`;
  let message = first.message ?? "is invalid";
  if (first.keyword === "additionalProperties") {
    const extra = (first.params as { additionalProperty?: string }).additionalProperty;
    where = `${where}/${extra}`;
    message = "is not a known property";
  } else if (first.keyword === "required") {
    const missing = (first.params as { missingProperty?: string }).missingProperty;
    where = `${where}/${missing}`;
    message = "is required";
  }
  return `${where} ${message}`;
}

/** Validates a value against a component schema or throws 400 validation_failed naming `where`. */
export function assertValid(validate: ValidateFunction, value: unknown, where: string): void {
  if (!validate(value)) {
    throw new AppError(
      "validation_failed",
      `${describeValidationError(where, validate.errors ?? [])}; see /docs for the request format`,
    );
  }
}
