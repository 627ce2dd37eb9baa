/**
 * The zoo soak's control (test/e2e/zoo-soak.test.ts): a Worker that only reads files through its ASSETS
 * binding, as warmserve reads a model's files when it loads one, and keeps nothing. Its workerd's RSS
 * over the same reads is what workerd itself grows by for that traffic, without tf.js or warmserve.
 *
 * POST /read?path=<file>&path=… reads the request's body and each file whole, keeps none of them, and
 * answers the byte count;
 * GET /v2/health/live answers 200 (the launcher waits for it).
 */
export default {
  async fetch(request, env) {
    const url = new URL(request.url)
    if (url.pathname === '/v2/health/live') return new Response('ok')
    if (url.pathname !== '/read') return new Response('not found', { status: 404 })
    let bytes = (await request.arrayBuffer()).byteLength
    for (const path of url.searchParams.getAll('path')) {
      const response = await env.ASSETS.fetch(new URL(path, 'https://model-assets.invalid/'))
      if (!response.ok) return new Response(`${path}: ${response.status}`, { status: 500 })
      bytes += (await response.arrayBuffer()).byteLength
    }
    return new Response(String(bytes))
  },
}
