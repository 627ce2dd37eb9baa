/** Model folders the end-to-end tests publish: variants of the bundled iris. */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../../scripts/launch.mjs'

/** Iris with its output bias replaced, as a model folder under `parent`: the same signature, other answers. */
export function irisVariant(parent: string, name: string, bias: [number, number, number]): string {
  const folder = join(parent, name)
  mkdirSync(folder)
  copyFileSync(join(ROOT, 'model-assets/iris/1/model.json'), join(folder, 'model.json'))
  const shard = readFileSync(join(ROOT, 'model-assets/iris/1/group1-shard1of1.bin'))
  const weights = new Float32Array(shard.buffer.slice(shard.byteOffset, shard.byteOffset + shard.byteLength))
  weights.set(bias, weights.length - 3) // species/bias, the shard's last weight
  writeFileSync(join(folder, 'group1-shard1of1.bin'), new Uint8Array(weights.buffer))
  return folder
}
