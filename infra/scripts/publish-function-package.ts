/**
 * Publishes the Functions app where the Function App runs it from: a zip in the private `app-package`
 * container (WEBSITE_RUN_FROM_PACKAGE = blob URL, read with the app's managed identity).
 *
 * Why not `azd deploy`: on Elastic Premium it uses Kudu zip deploy, which refuses an app that runs from
 * a package URL, and an app without a package URL needs an Azure Files content share, which needs
 * account keys. So azd runs this after provisioning (azure.yaml `hooks.postprovision`), signed in as
 * whoever ran `azd auth login`.
 *
 * Expects `npm ci && npm run clean && npm run build` to have run (a clean build: compiled files of
 * deleted sources would otherwise be shipped, and the host loads every file under dist/functions/). Reads azd's environment values:
 * AZURE_FUNCTION_PACKAGE_URL, AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_FUNCTION_APP_NAME,
 * AZURE_RESOURCE_MANAGER_ENDPOINT and, when set, AZURE_TENANT_ID.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, createWriteStream, lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pipeline } from 'node:stream/promises';
import { AzureDeveloperCliCredential } from '@azure/identity';
import type { TokenCredential } from '@azure/identity';
import { BlockBlobClient, isRestError } from '@azure/storage-blob';
import { ZipFile } from 'yazl';

// Compiled to dist/infra/scripts/: the repository root is three levels up.
const root = resolve(import.meta.dirname, '..', '..', '..');
const stage = join(root, '.tmp', 'function-package');
const zipPath = join(root, '.tmp', 'function-package.zip');
const WEB_API_VERSION = '2023-12-01';

function setting(name: string): string {
  const value = process.env[name]?.trim();
  if (!value)
    throw new Error(`${name} is not set; run this through azd (azd up, or azd hooks run postprovision).`);
  return value;
}

function run(command: string, args: string[], cwd: string): void {
  const windows = process.platform === 'win32';
  const result = spawnSync(windows ? `${command}.cmd` : command, args, {
    cwd,
    stdio: 'inherit',
    shell: windows,
  });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed in ${cwd} (exit ${String(result.status)}).`);
  }
}

/** What the Functions host needs: host.json, package.json, the compiled code and production dependencies. */
function stagePackage(): void {
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  for (const file of ['host.json', 'package.json', 'package-lock.json'])
    cpSync(join(root, file), join(stage, file));
  for (const dir of ['src', 'functions']) {
    cpSync(join(root, 'dist', dir), join(stage, 'dist', dir), { recursive: true });
  }
  run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'], stage);
}

function filesUnder(dir: string): string[] {
  const files: string[] = [];
  const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
  for (const entry of entries) {
    const path = join(dir, entry.name);
    // node_modules/.bin holds symlinks only; nothing at run time needs them.
    if (entry.isDirectory() && entry.name !== '.bin') files.push(...filesUnder(path));
    else if (entry.isFile()) files.push(path);
  }
  return files;
}

/** Zips the staged files (yazl: deflate, zip64 when needed); returns the number of files. */
async function writeZip(sourceDir: string, target: string): Promise<number> {
  const zip = new ZipFile();
  const files = filesUnder(sourceDir);
  for (const path of files) {
    zip.addFile(path, relative(sourceDir, path).split(sep).join('/'), {
      // A fixed time (the zip epoch, 1980-01-01): the same build gives the same bytes.
      mtime: new Date(1980, 0, 1),
      mode: 0o100000 | (lstatSync(path).mode & 0o777),
    });
  }
  zip.end();
  await pipeline(zip.outputStream, createWriteStream(target));
  return files.length;
}

/** How long a role assignment made by the provisioning may take to apply (Azure documents "up to 10 minutes"; usually 1-5). */
const ROLE_PROPAGATION_MS = 5 * 60_000;

/** Waits `first`, then twice as long each time up to `max`, for as long as `retry` says and `budgetMs` allows. */
async function withBackoff<T>(
  attempt: () => Promise<T>,
  options: {
    budgetMs: number;
    firstMs: number;
    maxMs: number;
    retry: (error: unknown) => boolean;
    onRetry: (error: unknown, waitMs: number, elapsedMs: number) => void;
  },
): Promise<T> {
  const started = Date.now();
  let wait = options.firstMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      const elapsed = Date.now() - started;
      if (!options.retry(error) || elapsed + wait > options.budgetMs) throw error;
      options.onRetry(error, wait, elapsed);
      await sleep(wait);
      wait = Math.min(wait * 2, options.maxMs);
    }
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message.split('\n')[0]! : String(error);
}

async function uploadPackage(packageUrl: string, credential: TokenCredential): Promise<void> {
  const blob = new BlockBlobClient(packageUrl, credential);
  try {
    await withBackoff(
      () => blob.uploadFile(zipPath, { blobHTTPHeaders: { blobContentType: 'application/zip' } }),
      {
        budgetMs: ROLE_PROPAGATION_MS,
        firstMs: 10_000,
        maxMs: 60_000,
        // 403 right after `azd provision`: the Storage Blob Data Contributor assignment it just made
        // for you on the package container has not reached the storage service yet.
        retry: (error) => isRestError(error) && error.statusCode === 403,
        onRetry: (_error, waitMs, elapsedMs) =>
          console.error(
            `Upload refused (403): the role assignment azd just made for you on the package container ` +
              `takes a few minutes to apply. Retrying in ${Math.round(waitMs / 1000)} s ` +
              `(${Math.round(elapsedMs / 1000)} s of up to ${ROLE_PROPAGATION_MS / 60_000} min so far).`,
          ),
      },
    );
  } catch (error) {
    if (isRestError(error) && error.statusCode === 403) {
      throw new Error(
        `Upload to ${packageUrl} still refused (403) after retrying for about ${ROLE_PROPAGATION_MS / 60_000} minutes. ` +
          'Check that azd ran as the principal it gave Storage Blob Data Contributor on the app-package ' +
          'container (AZURE_PRINCIPAL_ID), then publish again with `azd hooks run postprovision`.',
        { cause: error },
      );
    }
    throw error;
  }
}

async function armPost(credential: TokenCredential, path: string): Promise<void> {
  const endpoint = setting('AZURE_RESOURCE_MANAGER_ENDPOINT').replace(/\/+$/, '');
  const token = await credential.getToken(`${endpoint}/.default`);
  if (!token) throw new Error(`No token for ${endpoint}; run azd auth login.`);
  const response = await fetch(`${endpoint}${path}?api-version=${WEB_API_VERSION}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token.token}` },
  });
  if (!response.ok) throw new Error(`POST ${path} answered ${response.status}: ${await response.text()}`);
}

async function main(): Promise<void> {
  const packageUrl = setting('AZURE_FUNCTION_PACKAGE_URL');
  const app =
    `/subscriptions/${setting('AZURE_SUBSCRIPTION_ID')}/resourceGroups/${setting('AZURE_RESOURCE_GROUP')}` +
    `/providers/Microsoft.Web/sites/${setting('AZURE_FUNCTION_APP_NAME')}`;
  const tenantId = process.env['AZURE_TENANT_ID']?.trim();
  const credential = new AzureDeveloperCliCredential(tenantId ? { tenantId } : {});

  stagePackage();
  const entries = await writeZip(stage, zipPath);
  console.error(`Package: ${entries} files in ${relative(root, zipPath)}`);

  await uploadPackage(packageUrl, credential);
  console.error(`Uploaded to ${packageUrl}`);

  // The app mounts its package when it starts.
  await armPost(credential, `${app}/restart`);
  console.error('Function App restarted.');
  // Syncing triggers lets the platform see the timer. Right after a restart the host may still be
  // starting and answer with an error; the platform also syncs on its own once the host is up, so a
  // sync that keeps failing is worth a warning, not a failed deployment.
  try {
    await withBackoff(() => armPost(credential, `${app}/syncfunctiontriggers`), {
      budgetMs: 3 * 60_000,
      firstMs: 10_000,
      maxMs: 40_000,
      retry: () => true,
      onRetry: (error, waitMs) =>
        console.error(
          `Syncing triggers failed (${messageOf(error)}); retrying in ${Math.round(waitMs / 1000)} s.`,
        ),
    });
    console.error('Triggers synced.');
  } catch (error) {
    console.error(
      `Warning: could not sync the triggers (${messageOf(error)}). The app runs the new package; if the ` +
        'timer does not show up, run: az rest --method post --url ' +
        `"${setting('AZURE_RESOURCE_MANAGER_ENDPOINT').replace(/\/+$/, '')}${app}/syncfunctiontriggers?api-version=${WEB_API_VERSION}"`,
    );
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
