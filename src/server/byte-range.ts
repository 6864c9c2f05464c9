/**
 * Answers an original's bytes honouring an HTTP Range request (RFC 9110 §14), so a <video>
 * element can start at a timestamp and seek without downloading the whole file first. One
 * range is answered 206 with its Content-Range; several ranges get the whole body (200, as
 * the RFC allows); a Range that is not `bytes=` or cannot be parsed is ignored (200); one whose
 * ranges all lie past the end is 416 `range_not_satisfiable`.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { combineRanges, parse } from "range-parser";
import { AppError } from "../core/errors.ts";

/** The byte range `header` asks of `size` bytes; undefined: answer the whole body. */
export function requestedRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | undefined {
  if (header === undefined) return undefined;
  const parsed = parse(size, header);
  // Bit 1: malformed; such a header is ignored (RFC 9110 §14.2).
  if (parsed.type !== "bytes" || (parsed.code & 1) !== 0) return undefined;
  const ranges = combineRanges(parsed.ranges);
  if (ranges.length === 0) {
    throw new AppError(
      "range_not_satisfiable",
      `the Range "${header}" starts past the end of the ${size} bytes; ask for bytes=0- or leave Range out`,
      { size },
    );
  }
  const [range] = ranges;
  if (range === undefined || ranges.length > 1) return undefined;
  return { start: range.start, end: range.end };
}

/** Sends `bytes` as `contentType`, or the one range the request's Range header asks for. */
export function sendBytes(
  request: FastifyRequest,
  reply: FastifyReply,
  bytes: Buffer,
  contentType: string,
): FastifyReply {
  let range: { start: number; end: number } | undefined;
  try {
    range = requestedRange(request.headers.range, bytes.length);
  } catch (error) {
    // The client learns the size it may ask within (RFC 9110 §15.5.17).
    reply.header("content-range", `bytes */${bytes.length}`);
    throw error;
  }
  reply.type(contentType).header("accept-ranges", "bytes");
  if (range === undefined) return reply.send(bytes);
  return reply
    .status(206)
    .header("content-range", `bytes ${range.start}-${range.end}/${bytes.length}`)
    .send(bytes.subarray(range.start, range.end + 1));
}
