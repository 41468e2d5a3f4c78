import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      eqeqeq: ['error', 'always'],
      'no-console': 'off',
    },
  },
  {
    // The pure core (DESIGN.md): parsing, policy, trust decisions and verification; no I/O, no
    // adapters, no config module. Inputs come in, decisions go out; the clock is passed in.
    files: ['src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            'node:fs',
            'node:fs/promises',
            'node:http',
            'node:https',
            'node:http2',
            'node:net',
            'node:tls',
            'node:dgram',
            'node:dns',
            'node:child_process',
            'node:worker_threads',
            'node:timers',
            'redis',
            'express',
            'http-proxy-3',
            'pino',
            'prom-client',
          ],
          patterns: [
            {
              group: [
                '**/config/*',
                '**/server/*',
                '**/registry/*',
                '**/cache/*',
                '**/keys/*',
                '**/trust/*',
                '**/auth/*',
                '**/cli/*',
              ],
              message: 'src/core is pure: adapters import the core, never the reverse',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
);
