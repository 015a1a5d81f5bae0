// One rule per bug we never want again; type-aware so promises and awaits are checked.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The layers, as `no-restricted-imports` patterns per folder (docs/architecture.md draws the
// same picture). The patterns read the import as written: every import in this repository is
// relative, so a folder is named by a path segment (`../stages/`, `../../test/`).
const bans = {
  // Pipeline code is pure: no BullMQ or Koa in the domain.
  frameworks: { paths: ['bullmq', 'koa', '@koa/router', '@koa/bodyparser'] },
  test: {
    regex: '^\\.{1,2}/(.*/)?test/',
    message: 'Shipped code never imports test/; a fake that ships lives in ops/fakes/.',
  },
  stages: {
    regex: '^\\.{1,2}/(.*/)?stages/',
    message:
      'Only the stages import pipeline/stages/: move what a domain folder needs below them (pipeline/runs/, beside pipeline/context.ts).',
  },
  // db/ files sit one level down, so `../` is always the repository root.
  aboveContracts: {
    regex: '^\\.\\./(?!pipeline/contracts/|pipeline/errors\\.ts$)',
    message: 'db/ imports only pipeline/contracts/** and pipeline/errors.ts (and npm packages).',
  },
  workers: {
    regex: '^\\.{1,2}/(.*/)?workers/',
    message: 'ingress/ never imports workers/: both adapt the pipeline, side by side.',
  },
  ingress: {
    regex: '^\\.{1,2}/(.*/)?ingress/',
    message: 'workers/ never imports ingress/: both adapt the pipeline, side by side.',
  },
};

/**
 * The `no-restricted-imports` setting of one shipped folder: never `test/`, plus `more`. A file
 * takes the setting of the last block that matches it, so each block lists all its bans.
 */
const layer = (...more) => {
  const all = [bans.test, ...more];
  return [
    'error',
    {
      paths: all.flatMap((b) => b.paths ?? []),
      patterns: all.filter((b) => b.regex).map(({ regex, message }) => ({ regex, message })),
    },
  ];
};

export default tseslint.config(
  { ignores: ['node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // A dropped promise is a lost write or an unhandled rejection.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { considerDefaultExhaustiveForUnions: true },
      ],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },
  { files: ['**/*.js'], ...tseslint.configs.disableTypeChecked },
  {
    // Tests read raw pg rows (typed any) to look behind the platform's back.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/require-await': 'off',
    },
  },
  // Shipped code: everything but test/ (tests may import anything shipped).
  { files: ['**/*.ts'], ignores: ['test/**'], rules: { 'no-restricted-imports': layer() } },
  { files: ['db/**/*.ts'], rules: { 'no-restricted-imports': layer(bans.aboveContracts) } },
  // The domain folders never import the stages, which sit on top of them.
  {
    files: ['pipeline/**/*.ts'],
    rules: { 'no-restricted-imports': layer(bans.frameworks, bans.stages) },
  },
  {
    files: ['pipeline/stages/**/*.ts'],
    rules: { 'no-restricted-imports': layer(bans.frameworks) },
  },
  { files: ['ingress/**/*.ts'], rules: { 'no-restricted-imports': layer(bans.workers) } },
  { files: ['workers/**/*.ts'], rules: { 'no-restricted-imports': layer(bans.ingress) } },
);
