/**
 * The heat map's colours, shared by the PNG overlay (./overlay.ts) and the web page's detail
 * view (web/detail.ts), which draws the grid itself: no imports, so the page can bundle it.
 */

/** A blue → cyan → yellow → red ramp for t in [0, 1]. */
export function heatColour(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, t));
  const ramp = (from: number, to: number) => Math.min(1, Math.max(0, (x - from) / (to - from)));
  const red = ramp(0.35, 0.7);
  const green = x < 0.7 ? ramp(0.1, 0.4) : 1 - ramp(0.7, 1);
  const blue = 1 - ramp(0.3, 0.6);
  return [Math.round(255 * red), Math.round(255 * green), Math.round(255 * (0.4 + 0.6 * blue))];
}
