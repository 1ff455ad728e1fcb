// Import rules for src/ (issue 13's layers), checked by `npm run lint` with dependency-cruiser.
// Violations that existed when the rules were written are listed in .dependency-cruiser-known-violations.json
// and ignored (--ignore-known) until the redesign removes them; a new one fails the lint.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'An import cycle ties modules into one unit that can only be loaded, tested and changed together.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'sfu-not-to-edges',
      severity: 'error',
      comment:
        'src/sfu is the media API with its own vocabulary: the edges (API, signaling) and token auth call it, never the reverse ' +
        '(a join is a JoinRequest, not token claims).',
      from: { path: '^src/sfu/' },
      to: { path: '^src/(api|signaling|auth)/' },
    },
    {
      name: 'egress-worker-not-to-api',
      severity: 'error',
      comment:
        'The egress worker is its own process: loading the API modules (even through another module) pulls the gateway into it. ' +
        'What it shares with the gateway lives in a leaf contract module.',
      from: { path: '^src/egress/worker/' },
      to: { path: '^src/api/', reachable: true },
    },
    {
      name: 'storage-not-to-egress',
      severity: 'error',
      comment: 'src/storage sits below egress and owns its settings types; egress uses storage, not the reverse.',
      from: { path: '^src/storage/' },
      to: { path: '^src/egress/' },
    },
    {
      name: 'nothing-to-main',
      severity: 'error',
      comment:
        'src/main.ts composes the gateway from every layer, so a module importing it imports everything. ' +
        'Only the command line (src/cli.ts, the process entry above it) loads it.',
      from: { pathNot: '^src/cli\\.ts$' },
      to: { path: '^src/main\\.ts$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    // Type-only imports count: a cycle through types still couples the modules' designs.
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs', '.json'] },
    cache: false,
  },
};
