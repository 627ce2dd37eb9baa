/**
 * The import rules `npm run check:deps` enforces over src/ (dependency-cruiser): no cycles, and the
 * layers of docs/architecture.md — a protocol's core knows nothing of HTTP, the service binding
 * reaches the protocols without the HTTP routes, the repository knows no protocol.
 * @type {import('dependency-cruiser').IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment:
        'A cycle ties modules that should be read (and tested) one at a time; cut it with a narrow interface or a leaf module.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'protocols-not-http',
      severity: 'error',
      comment:
        "A protocol's request → answer logic is transport-neutral: the HTTP routes and the service binding both call it.",
      from: { path: '^src/protocols/', pathNot: '/routes\\.ts$|^src/protocols/[^/]+/routes/' },
      to: { path: '^src/http/' },
    },
    {
      name: 'rpc-not-http',
      severity: 'error',
      comment: 'The service binding is a transport of its own: it calls the protocol cores, never the HTTP routes.',
      from: { path: '^src/rpc' },
      to: { path: '^src/http/|/routes\\.ts$' },
    },
    {
      name: 'repository-not-protocols',
      severity: 'error',
      comment: 'The repository loads and indexes models; what a protocol makes of them is not its concern.',
      from: { path: '^src/repository/' },
      to: { path: '^src/protocols/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: a cycle through types still ties the modules together for a reader.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(node_modules|test|bench|scripts|client)/' },
  },
}
