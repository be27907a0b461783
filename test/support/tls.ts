import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A test CA and a server certificate for `localhost` / `127.0.0.1` signed by it, as paths and PEM text. */
export interface TestCertificate {
  caPath: string;
  certPath: string;
  keyPath: string;
  ca: string;
  cert: string;
  key: string;
}

// dist/test/support/tls.js -> repository root
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const tlsDir = join(repoRoot, '.tmp', 'tls');
const oneDaySeconds = 24 * 60 * 60;

/**
 * Makes sure `.tmp/tls/{ca,server,server-key}.pem` exist and stay valid for at least a day, creating
 * them with openssl when needed. Test processes trust the CA through NODE_EXTRA_CA_CERTS.
 */
export function ensureTestCertificate(): TestCertificate {
  if (!isUsable(tlsDir)) {
    createCertificates();
  }
  return readCertificate(tlsDir);
}

function paths(dir: string): { caPath: string; certPath: string; keyPath: string } {
  return {
    caPath: join(dir, 'ca.pem'),
    certPath: join(dir, 'server.pem'),
    keyPath: join(dir, 'server-key.pem'),
  };
}

function readCertificate(dir: string): TestCertificate {
  const { caPath, certPath, keyPath } = paths(dir);
  return {
    caPath,
    certPath,
    keyPath,
    ca: readFileSync(caPath, 'utf8'),
    cert: readFileSync(certPath, 'utf8'),
    key: readFileSync(keyPath, 'utf8'),
  };
}

function isUsable(dir: string): boolean {
  const { caPath, certPath, keyPath } = paths(dir);
  if (![caPath, certPath, keyPath].every((path) => existsSync(path))) return false;
  try {
    for (const path of [caPath, certPath]) {
      openssl(['x509', '-checkend', String(oneDaySeconds), '-noout', '-in', path]);
    }
    openssl(['verify', '-CAfile', caPath, certPath]);
    return true;
  } catch {
    return false;
  }
}

// Built in a private directory and renamed into place, so concurrent test processes never see half a set.
function createCertificates(): void {
  const workDir = join(repoRoot, '.tmp', `tls.${process.pid}.${Date.now()}`);
  mkdirSync(workDir, { recursive: true });
  try {
    const { caPath, certPath, keyPath } = paths(workDir);
    const caKeyPath = join(workDir, 'ca-key.pem');
    const csrPath = join(workDir, 'server.csr');
    const extPath = join(workDir, 'server.ext');
    openssl([
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-sha256',
      '-days',
      '3650',
      '-keyout',
      caKeyPath,
      '-out',
      caPath,
      '-subj',
      '/CN=bosh-azure-stemcell-mirror test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    openssl([
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-sha256',
      '-keyout',
      keyPath,
      '-out',
      csrPath,
      '-subj',
      '/CN=localhost',
    ]);
    writeFileSync(
      extPath,
      [
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage=serverAuth',
        'subjectKeyIdentifier=hash',
        'authorityKeyIdentifier=keyid,issuer',
        '',
      ].join('\n'),
    );
    openssl([
      'x509',
      '-req',
      '-sha256',
      '-days',
      '825',
      '-in',
      csrPath,
      '-CA',
      caPath,
      '-CAkey',
      caKeyPath,
      '-set_serial',
      `0x${Date.now().toString(16)}`,
      '-extfile',
      extPath,
      '-out',
      certPath,
    ]);
    for (const leftover of [caKeyPath, csrPath, extPath]) rmSync(leftover);
    rmSync(tlsDir, { recursive: true, force: true });
    try {
      renameSync(workDir, tlsDir);
    } catch (error) {
      // Another process got there first; its set is as good as ours.
      if (!isUsable(tlsDir)) throw error;
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

function openssl(args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim() ?? '';
    throw new Error(
      `openssl ${args.slice(0, 2).join(' ')} failed while preparing the test TLS certificate: ${stderr}`,
      {
        cause: error,
      },
    );
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  ensureTestCertificate();
}
