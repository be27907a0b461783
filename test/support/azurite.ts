import { StorageSharedKeyCredential } from '@azure/storage-blob';
import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureTestCertificate } from './tls.js';

/** An Azurite Blob service over HTTPS that accepts bearer tokens (`--oauth basic`) and the account key. */
export interface AzuriteBlob {
  /** `https://127.0.0.1:PORT/devstoreaccount1` */
  blobEndpoint: string;
  accountName: 'devstoreaccount1';
  /** The well-known emulator key: for test assertions only, the product authenticates with tokens. */
  accountKey: string;
  sharedKeyCredential: StorageSharedKeyCredential;
  stop(): Promise<void>;
}

const accountName = 'devstoreaccount1';
const accountKey = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const startTimeoutMs = 30_000;
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const azuriteBlobMain = join(repoRoot, 'node_modules', 'azurite', 'dist', 'src', 'blob', 'main.js');

// Runs Azurite's entry point, but exits when the IPC channel to the test process closes, so a test process
// that dies without cleaning up (SIGKILL, crash) leaves no server behind.
const launcher = [
  "process.on('disconnect', () => process.exit(0));",
  'process.argv.splice(1, 0, process.env.BASM_AZURITE_MAIN);',
  'require(process.env.BASM_AZURITE_MAIN);',
].join('\n');

/** Starts Azurite Blob on a free loopback port with the Node.js that runs the tests and waits until it listens. */
export async function startAzurite(): Promise<AzuriteBlob> {
  const { certPath, keyPath } = ensureTestCertificate();
  const args = [
    '--blobHost',
    '127.0.0.1',
    '--blobPort',
    '0',
    '--cert',
    certPath,
    '--key',
    keyPath,
    '--oauth',
    'basic',
    '--inMemoryPersistence',
    '--loose',
    '--skipApiVersionCheck',
    '--disableTelemetry',
  ];
  const env: NodeJS.ProcessEnv = { ...process.env, BASM_AZURITE_MAIN: azuriteBlobMain };
  // The test runner's marker would make the child think it is a test file; custom accounts would change the key.
  delete env.NODE_TEST_CONTEXT;
  delete env.AZURITE_ACCOUNTS;
  const child = spawn(process.execPath, ['--eval', launcher, '--', ...args], {
    cwd: tmpdir(),
    env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const { stdout, stderr } = child;
  if (stdout === null || stderr === null) throw new Error('Azurite Blob was spawned without output pipes');
  let output = '';
  stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
  stderr.setEncoding('utf8').on('data', (text: string) => (output += text));
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  let exited = child.exitCode !== null;
  const exitedPromise = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      process.off('exit', killOnExit);
      resolve();
    }),
  );
  const stop = async (): Promise<void> => {
    if (!exited) {
      // Referenced again so this process waits for the exit instead of ending with stop() pending.
      child.ref();
      child.kill('SIGKILL');
      await exitedPromise;
    }
  };

  try {
    const address = await waitForListening(child, () => output);
    // A forgotten stop() must not keep the test process alive; the exit hook and the IPC channel end Azurite then.
    child.unref();
    child.channel?.unref();
    for (const pipe of [stdout, stderr]) (pipe as unknown as Socket).unref();
    return {
      blobEndpoint: `${address}/${accountName}`,
      accountName,
      accountKey,
      sharedKeyCredential: new StorageSharedKeyCredential(accountName, accountKey),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

function waitForListening(child: ReturnType<typeof spawn>, output: () => string): Promise<string> {
  return new Promise((resolve, reject) => {
    const listening = /successfully listens on (https:\/\/127\.0\.0\.1:\d+)/;
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      child.off('error', onError);
    };
    const fail = (reason: string): void => {
      cleanup();
      reject(new Error(`Azurite Blob did not start (${reason}). Its output:\n${output()}`));
    };
    const onData = (): void => {
      const match = listening.exec(output());
      if (match?.[1] !== undefined) {
        cleanup();
        resolve(match[1]);
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
      fail(`exited with ${signal ?? `code ${code}`}`);
    const onError = (error: Error): void => fail(`could not run ${process.execPath}: ${error.message}`);
    const timer = setTimeout(
      () => fail(`no "listens on" line within ${startTimeoutMs / 1000} s`),
      startTimeoutMs,
    );
    // Registered after the output collectors, so `output()` already holds the chunk that matched.
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
    child.once('error', onError);
  });
}
