/**
 * Jest configuration for the whole suite. One Temporal dev server is started
 * for the run by test/support/global-setup.ts and stopped by
 * test/support/global-teardown.ts. Tests run one at a time (maxWorkers 1)
 * because they share that server, the Docker engine and host ports.
 *
 * @type {import('jest').Config}
 */
module.exports = {
  preset: 'ts-jest',
  transform: {
    // isolatedModules makes ts-jest transpile each file on its own without
    // type checking, which is much faster. `npm run build` (tsc) does the
    // type checking. It is set through ts-jest's tsconfig override, because
    // ts-jest 29.4 prints a deprecation warning for its own isolatedModules
    // option on every run.
    '^.+\\.tsx?$': ['ts-jest', { tsconfig: { isolatedModules: true } }],
  },
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  testTimeout: 120000,
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  maxWorkers: 1,
  // A test that fails midway can leave a socket to a child process open; CI
  // must still end when the last test has finished.
  forceExit: true,
};
