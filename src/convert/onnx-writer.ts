/**
 * Writes an ONNX model with the onnx-proto message definitions, one initializer at a time, so
 * a 1 GB tower never sits in memory as one protobuf buffer: the file is the ModelProto without
 * initializers followed by one ModelProto per initializer whose graph holds just that tensor.
 * Protobuf parsers merge repeated occurrences of a message field (the graph) and concatenate
 * repeated fields (the initializers), so the file reads as one model with every initializer,
 * in ONNX Runtime as in the Python onnx package.
 */
import { open, rename, rm } from "node:fs/promises";
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;
export type NodeProto = onnxProto.onnx.INodeProto;
export type ValueInfoProto = onnxProto.onnx.IValueInfoProto;
export const TensorDataType = onnx.TensorProto.DataType;
export const AttributeType = onnx.AttributeProto.AttributeType;

/** IR version 8 is what ONNX 1.10+ writes for opset 17. */
const IR_VERSION = 8;

export interface Initializer {
  readonly name: string;
  readonly dims: readonly number[];
  readonly dataType: "float" | "int64";
  values(): Promise<Float32Array | BigInt64Array>;
}

export interface GraphDefinition {
  readonly name: string;
  readonly nodes: readonly NodeProto[];
  readonly inputs: readonly ValueInfoProto[];
  readonly outputs: readonly ValueInfoProto[];
  readonly initializers: readonly Initializer[];
  readonly opset: number;
  readonly producerVersion: string;
}

/** A float32 or int64 tensor input/output with named (dynamic) or fixed dimensions. */
export function valueInfo(
  name: string,
  dataType: "float" | "int64",
  dims: readonly (number | string)[],
): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: dataType === "float" ? TensorDataType.FLOAT : TensorDataType.INT64,
        shape: {
          dim: dims.map((dim) => (typeof dim === "number" ? { dimValue: dim } : { dimParam: dim })),
        },
      },
    },
  };
}

function encode(message: onnxProto.onnx.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(message).finish();
}

/** Writes `graph` to `file` (through a temporary file, renamed when complete). */
export async function writeOnnxModel(file: string, graph: GraphDefinition): Promise<void> {
  const partial = `${file}.partial`;
  const handle = await open(partial, "w");
  try {
    await handle.write(
      encode({
        irVersion: IR_VERSION,
        producerName: "longclip-search convert",
        producerVersion: graph.producerVersion,
        opsetImport: [{ domain: "", version: graph.opset }],
        graph: {
          name: graph.name,
          node: [...graph.nodes],
          input: [...graph.inputs],
          output: [...graph.outputs],
        },
      }),
    );
    for (const initializer of graph.initializers) {
      const values = await initializer.values();
      const tensor = {
        name: initializer.name,
        dims: [...initializer.dims],
        dataType: initializer.dataType === "float" ? TensorDataType.FLOAT : TensorDataType.INT64,
        rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
      };
      await handle.write(encode({ graph: { initializer: [tensor] } }));
    }
    await handle.close();
    await rename(partial, file);
  } catch (error) {
    await handle.close().catch(() => {});
    await rm(partial, { force: true });
    throw error;
  }
}
