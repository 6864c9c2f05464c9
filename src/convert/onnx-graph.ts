/**
 * A small builder of ONNX graphs: nodes with generated output names, initializers loaded when
 * the file is written, and the transformer pieces both CLIP towers share (layer norm,
 * multi-head attention, the MLP), in batch-first [N, L, W] layout.
 */
import type { Activation } from "./clip-spec.ts";
import { AttributeType, type Initializer, type NodeProto } from "./onnx-writer.ts";
import { transposed } from "./tensor.ts";

export type Attribute = { float: number } | { int: number } | { ints: readonly number[] };

export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: Initializer[] = [];
  private count = 0;
  private readonly weightNames = new Set<string>();

  /** Adds a node; returns the name of its (first) output. */
  op(
    opType: string,
    inputs: readonly string[],
    attributes: Record<string, Attribute> = {},
  ): string {
    const output = `${opType.toLowerCase()}_${this.count++}`;
    this.nodes.push({
      opType,
      name: output,
      input: [...inputs],
      output: [output],
      attribute: Object.entries(attributes).map(([name, value]) => {
        if ("float" in value) return { name, type: AttributeType.FLOAT, f: value.float };
        if ("int" in value) return { name, type: AttributeType.INT, i: value.int };
        return { name, type: AttributeType.INTS, ints: [...value.ints] };
      }),
    });
    return output;
  }

  /** Renames the output of the last node (for the graph outputs). */
  nameLastOutput(name: string): void {
    const last = this.nodes[this.nodes.length - 1];
    if (last?.output) last.output = [name];
  }

  /**
   * A float32 initializer whose values are read when the model is written; a name already
   * added is reused (a parameter two branches of the graph read is stored once).
   */
  weight(name: string, dims: readonly number[], load: () => Promise<Float32Array>): string {
    if (this.weightNames.has(name)) return name;
    this.weightNames.add(name);
    this.initializers.push({ name, dims, dataType: "float", values: load });
    return name;
  }

  /** A small constant initializer. */
  constant(
    dims: readonly number[],
    values: readonly number[],
    dataType: "float" | "int64",
  ): string {
    const name = `const_${this.count++}`;
    const typed =
      dataType === "float"
        ? Float32Array.from(values)
        : BigInt64Array.from(values, (v) => BigInt(v));
    this.initializers.push({ name, dims, dataType, values: async () => typed });
    return name;
  }

  int64s(values: readonly number[]): string {
    return this.constant([values.length], values, "int64");
  }

  scalar(value: number): string {
    return this.constant([], [value], "float");
  }
}

/** Reads official-layout parameters; `linear` gives a [out, in] weight as [in, out] for MatMul. */
export interface ParameterSource {
  read(name: string): Promise<Float32Array>;
}

export class TransformerBuilder {
  constructor(
    readonly graph: GraphBuilder,
    readonly source: ParameterSource,
    readonly shapes: ReadonlyMap<string, readonly number[]>,
    readonly activation: Activation,
    readonly layerNormEps: number,
  ) {}

  /** A parameter as stored, under its official name. */
  param(name: string): string {
    const dims = this.shapes.get(name);
    if (!dims) throw new Error(`no parameter ${name} in the CLIP layout`);
    return this.graph.weight(name, dims, () => this.source.read(name));
  }

  /** x @ W^T + b for an official [out, in] linear weight, written as [in, out]. */
  linear(x: string, prefix: string): string {
    const name = `${prefix}.weight`;
    const [out, inp] = this.shapes.get(name) as [number, number];
    const weight = this.graph.weight(`${name}.T`, [inp, out], async () =>
      transposed(await this.source.read(name), out, inp),
    );
    return this.graph.op("Add", [
      this.graph.op("MatMul", [x, weight]),
      this.param(`${prefix}.bias`),
    ]);
  }

  layerNorm(x: string, prefix: string): string {
    return this.graph.op(
      "LayerNormalization",
      [x, this.param(`${prefix}.weight`), this.param(`${prefix}.bias`)],
      { axis: { int: -1 }, epsilon: { float: this.layerNormEps } },
    );
  }

  private activate(x: string): string {
    const g = this.graph;
    if (this.activation === "quick_gelu") {
      return g.op("Mul", [x, g.op("Sigmoid", [g.op("Mul", [x, g.scalar(1.702)])])]);
    }
    const erf = g.op("Erf", [g.op("Div", [x, g.scalar(Math.SQRT2)])]);
    return g.op("Mul", [g.op("Mul", [x, g.scalar(0.5)]), g.op("Add", [erf, g.scalar(1)])]);
  }

  /** Multi-head self-attention on [N, L, W]; `mask` is added to the [N, H, L, L] scores. */
  private attention(
    x: string,
    prefix: string,
    width: number,
    heads: number,
    mask?: string,
  ): string {
    const g = this.graph;
    const headWidth = width / heads;
    const inProj = `${prefix}.in_proj_weight`;
    const weight = g.weight(`${inProj}.T`, [width, 3 * width], async () =>
      transposed(await this.source.read(inProj), 3 * width, width),
    );
    const qkv = g.op("Add", [g.op("MatMul", [x, weight]), this.param(`${prefix}.in_proj_bias`)]);
    // [N, L, 3W] -> [3, N, H, L, head]
    const split = g.op(
      "Transpose",
      [g.op("Reshape", [qkv, g.int64s([0, 0, 3, heads, headWidth])])],
      { perm: { ints: [2, 0, 3, 1, 4] } },
    );
    const part = (index: number) =>
      g.op("Gather", [split, g.int64s([index])], { axis: { int: 0 } });
    const squeeze = (t: string) => g.op("Squeeze", [t, g.int64s([0])]);
    const q = g.op("Mul", [squeeze(part(0)), g.scalar(1 / Math.sqrt(headWidth))]);
    const k = squeeze(part(1));
    const v = squeeze(part(2));
    let scores = g.op("MatMul", [q, g.op("Transpose", [k], { perm: { ints: [0, 1, 3, 2] } })]);
    if (mask) scores = g.op("Add", [scores, mask]);
    const context = g.op("MatMul", [g.op("Softmax", [scores], { axis: { int: -1 } }), v]);
    const merged = g.op("Reshape", [
      g.op("Transpose", [context], { perm: { ints: [0, 2, 1, 3] } }),
      g.int64s([0, 0, width]),
    ]);
    return this.linear(merged, `${prefix}.out_proj`);
  }

  /** One residual block (`block` = `prefix.i`): attention, then the MLP, each added to x. */
  block(x: string, block: string, width: number, heads: number, mask?: string): string {
    const g = this.graph;
    const attended = this.attention(
      this.layerNorm(x, `${block}.ln_1`),
      `${block}.attn`,
      width,
      heads,
      mask,
    );
    const out = g.op("Add", [x, attended]);
    const hidden = this.activate(
      this.linear(this.layerNorm(out, `${block}.ln_2`), `${block}.mlp.c_fc`),
    );
    return g.op("Add", [out, this.linear(hidden, `${block}.mlp.c_proj`)]);
  }

  /** The residual blocks `prefix.0 … prefix.(layers-1)` applied to x. */
  blocks(
    x: string,
    prefix: string,
    layers: number,
    width: number,
    heads: number,
    mask?: string,
  ): string {
    let out = x;
    for (let i = 0; i < layers; i++) out = this.block(out, `${prefix}.${i}`, width, heads, mask);
    return out;
  }

  /**
   * A block's value path (MaskCLIP): out_proj(v(ln_1(x))) for the block's input x, each token
   * attending only to itself, so the heads' split and merge cancel out; no residual, no MLP.
   */
  valuePath(x: string, block: string, width: number): string {
    const g = this.graph;
    const inProj = `${block}.attn.in_proj_weight`;
    const inBias = `${block}.attn.in_proj_bias`;
    // rows [2W, 3W) of the packed q/k/v projection are v's
    const weight = g.weight(`${inProj}.value.T`, [width, width], async () =>
      transposed((await this.source.read(inProj)).subarray(2 * width * width), width, width),
    );
    const bias = g.weight(`${inBias}.value`, [width], async () =>
      (await this.source.read(inBias)).slice(2 * width, 3 * width),
    );
    const value = g.op("Add", [g.op("MatMul", [this.layerNorm(x, `${block}.ln_1`), weight]), bias]);
    return this.linear(value, `${block}.attn.out_proj`);
  }
}
