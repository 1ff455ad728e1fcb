// ESLint 9 flat config. Type-aware (typescript-eslint's project service reads tsconfig.json), so the
// promise rules see which expressions are promises: a promise nobody awaits or catches is an
// unhandled rejection waiting to happen, and an async callback handed to an API that ignores its
// result (an event listener, a timer) loses its errors the same way.
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  {
    // Build output and data, and the browser pages' plain scripts (served as they are, not part of
    // the TypeScript project).
    ignores: ['node_modules/', 'data/', 'bench/results/', 'templates/**/*.js'],
  },
  {
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  {
    files: ['**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      // `void p` counts as floating too: an un-awaited promise gets a .catch that says what failed.
      '@typescript-eslint/no-floating-promises': ['error', { ignoreVoid: false }],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-for-in-array': 'error',
      '@typescript-eslint/prefer-promise-reject-errors': 'error',
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      'no-var': 'error',
      // A `let` assigned once, after closures that read it were created, cannot be a const there.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      'no-control-regex': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-debugger': 'error',
    },
  },
  {
    // The edges reach media through the sfu's server-side operations (Room.openTap, openViewer,
    // createDataSource, rtpCapabilities; Participant.openPlainSend, openWebRtcSend), never through a
    // room's Router: what happens on it (and when it closes) stays the sfu's.
    files: ['src/**/*.ts'],
    ignores: ['src/sfu/**'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          // A class's own `#router` field is its business; `x.router` is reaching into another object.
          selector: "MemberExpression[property.type='Identifier'][property.name='router']",
          message: "Use the room's server-side operations (src/sfu/Room.ts, Participant.ts) instead of its Router.",
        },
      ],
    },
  },
);
