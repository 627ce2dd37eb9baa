/**
 * @module protocols/images/png — a PNG's pixels from the layout headers.ts read: its image data
 * inflated into a buffer of exactly the size its header allows (the inflate is stopped past it, so a
 * 261 KB zlib bomb costs what its header declares, not 256 MB), unfiltered in place, and written
 * straight to RGBA. Only IHDR, PLTE and IDAT reach it: ancillary chunks were skipped unread.
 *
 * In JavaScript, like `fast-png` (which this replaces for decoding): a corrupt file fails in
 * JavaScript and the garbage collector takes what it allocated. `fast-png` inflated all of the data
 * before looking at its size, and held the image several times over (inflated, unfiltered at 16 bits
 * a sample, then RGBA).
 */
import { Unzlib } from 'fflate'
import { ApiError, badRequest } from '../../core/errors'
import type { PngLayout } from './headers'
import { ADAM7, pngRowBytes } from './headers'

/**
 * Compressed bytes given to the inflater at a time: deflate expands at most ~1032×, so one piece
 * yields at most ~1 MB before the running total is checked.
 */
const INFLATE_PIECE = 1024

/**
 * The zlib stream of the IDAT chunks inflated into exactly `size` bytes; 400 if it holds more or less.
 * fflate's streaming inflater, fed small pieces, synchronously: the platform's DecompressionStream
 * inflated a whole 261 KB bomb (256 MB) into its queue before the first read could stop it.
 */
function inflateExactly(idat: Uint8Array[], size: number, where: string, what: string): Uint8Array {
  const out = new Uint8Array(size)
  let filled = 0
  const inflater = new Unzlib((chunk) => {
    if (filled + chunk.length > size) {
      throw badRequest(
        `${where}: the PNG's image data inflates to more than the ${size} bytes its ${what} header allows (a compression bomb)`,
      )
    }
    out.set(chunk, filled)
    filled += chunk.length
  })
  try {
    for (const piece of idat)
      for (let i = 0; i < piece.length; i += INFLATE_PIECE) inflater.push(piece.subarray(i, i + INFLATE_PIECE))
    inflater.push(new Uint8Array(0), true)
  } catch (error) {
    if (error instanceof ApiError) throw error
    throw badRequest(`${where}: the PNG image is truncated or corrupt; its image data is not a valid zlib stream`)
  }
  if (filled < size)
    throw badRequest(
      `${where}: the PNG image is truncated or corrupt; its image data inflates to ${filled} bytes, its header needs ${size}`,
    )
  return out
}

/** PNG's filters undone in place on `rows` rows of `rowBytes` bytes (each after its filter byte), `bpp` bytes a pixel (PNG spec 9). */
function unfilter(data: Uint8Array, start: number, rows: number, rowBytes: number, bpp: number, where: string): void {
  for (let r = 0; r < rows; r++) {
    const at = start + r * (rowBytes + 1)
    const filter = data[at]!
    const row = at + 1
    const prior = row - rowBytes - 1
    const hasPrior = r > 0
    switch (filter) {
      case 0:
        break
      case 1:
        for (let i = bpp; i < rowBytes; i++) data[row + i] = (data[row + i]! + data[row + i - bpp]!) & 255
        break
      case 2:
        if (hasPrior) for (let i = 0; i < rowBytes; i++) data[row + i] = (data[row + i]! + data[prior + i]!) & 255
        break
      case 3:
        for (let i = 0; i < rowBytes; i++) {
          const left = i >= bpp ? data[row + i - bpp]! : 0
          const up = hasPrior ? data[prior + i]! : 0
          data[row + i] = (data[row + i]! + ((left + up) >> 1)) & 255
        }
        break
      case 4:
        for (let i = 0; i < rowBytes; i++) {
          const a = i >= bpp ? data[row + i - bpp]! : 0
          const b = hasPrior ? data[prior + i]! : 0
          const c = hasPrior && i >= bpp ? data[prior + i - bpp]! : 0
          const p = a + b - c
          const pa = Math.abs(p - a)
          const pb = Math.abs(p - b)
          const pc = Math.abs(p - c)
          data[row + i] = (data[row + i]! + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c)) & 255
        }
        break
      default:
        throw badRequest(
          `${where}: the PNG image is truncated or corrupt; row ${r} has filter type ${filter}, which PNG does not define`,
        )
    }
  }
}

/**
 * Decodes a PNG to RGBA (`width × height × 4` bytes): gray to three equal channels, 16-bit samples
 * to their high byte, 1/2/4-bit gray scaled to 0–255, palette indices to their colors; alpha dropped
 * (the model takes RGB or luma), so the alpha channel is 255.
 */
export function decodePngPixels(layout: PngLayout, width: number, height: number, where: string): Uint8Array {
  const { depth, colorType, palette } = layout
  const channels = colorType === 0 || colorType === 3 ? 1 : colorType === 4 ? 2 : colorType === 2 ? 3 : 4
  const bitsPerPixel = channels * depth
  const bpp = Math.max(1, bitsPerPixel >> 3)
  const data = inflateExactly(layout.idat, layout.inflated, where, `${width}×${height}`)
  const rgba = new Uint8Array(width * height * 4)
  const step = depth >> 3 // bytes a sample, 0 below 8 bits
  const color = channels >= 3
  const max = (1 << depth) - 1
  const passes = layout.interlaced ? ADAM7 : ([[0, 0, 1, 1]] as const)
  let start = 0
  for (const [x0, y0, dx, dy] of passes) {
    const w = Math.ceil((width - x0) / dx)
    const h = Math.ceil((height - y0) / dy)
    if (w <= 0 || h <= 0) continue
    const rowBytes = pngRowBytes(w, bitsPerPixel) - 1
    unfilter(data, start, h, rowBytes, bpp, where)
    for (let r = 0; r < h; r++) {
      const row = start + r * (rowBytes + 1) + 1
      let out = ((y0 + r * dy) * width + x0) * 4
      for (let c = 0; c < w; c++, out += 4 * dx) {
        let red: number, green: number, blue: number
        if (step) {
          const at = row + c * channels * step
          red = data[at]!
          green = color ? data[at + step]! : red
          blue = color ? data[at + 2 * step]! : red
        } else {
          const bit = c * depth
          const value = (data[row + (bit >> 3)]! >> (8 - depth - (bit & 7))) & max
          if (palette) {
            red = green = blue = 0
            if (value * 3 < palette.length)
              [red, green, blue] = [palette[value * 3]!, palette[value * 3 + 1]!, palette[value * 3 + 2]!]
          } else red = green = blue = Math.round((value * 255) / max)
        }
        if (palette && step) {
          const index = red * 3
          ;[red, green, blue] =
            index < palette.length ? [palette[index]!, palette[index + 1]!, palette[index + 2]!] : [0, 0, 0]
        }
        rgba[out] = red
        rgba[out + 1] = green
        rgba[out + 2] = blue
        rgba[out + 3] = 255
      }
    }
    start += h * (rowBytes + 1)
  }
  return rgba
}
