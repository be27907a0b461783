/**
 * The documents stand alone: every relative link in the README, CONTRIBUTING.md and docs/ leads to a file
 * (and heading) of the repository, and no file of the repository points at design notes kept outside it.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// Compiled to dist/test/docs/: the repository root is three levels up.
const root = fileURLToPath(new URL('../../../', import.meta.url));

/** Build output, installed packages, local state: not part of the repository. */
const NOT_THE_REPOSITORY = new Set(['.git', 'node_modules', 'dist', 'coverage', '.tmp', '.azure']);

/** Spelled in pieces so that this file does not mention them itself. */
const OUTSIDE_REFERENCES = [['DESIGN', 'md'].join('.'), ['..', 'shared'].join('/')];

function repositoryFiles(dir = root): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    if (NOT_THE_REPOSITORY.has(entry.name)) return [];
    const path = join(dir, entry.name);
    return entry.isDirectory() ? repositoryFiles(path) : entry.isFile() ? [path] : [];
  });
}

function documents(): string[] {
  const docs = readdirSync(join(root, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => join(root, 'docs', name));
  return [join(root, 'README.md'), join(root, 'CONTRIBUTING.md'), ...docs];
}

/** Markdown without code blocks: a `#` line in a shell example is not a heading. */
function withoutCodeBlocks(markdown: string): string {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
}

/** Markdown without code: a link-like text in a code block or span is an example, not a link. */
function prose(markdown: string): string {
  return withoutCodeBlocks(markdown).replace(/`[^`\n]*`/g, '');
}

/** The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens. */
function headingAnchor(heading: string): string {
  return heading
    .replace(/`/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchorsOf(file: string): Set<string> {
  const headings = withoutCodeBlocks(readFileSync(file, 'utf8')).match(/^#{1,6}\s+.+$/gm) ?? [];
  return new Set(headings.map((line) => headingAnchor(line.replace(/^#+\s+/, ''))));
}

function relativeLinks(file: string): string[] {
  const text = prose(readFileSync(file, 'utf8'));
  return [...text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)]
    .map((match) => match[1]!)
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

test('the anchor of a heading is the one GitHub makes', () => {
  assert.equal(headingAnchor('What `azd up` deploys'), 'what-azd-up-deploys');
  assert.equal(
    headingAnchor("Keep the director's VMs out of the mirror's resource group"),
    'keep-the-directors-vms-out-of-the-mirrors-resource-group',
  );
  assert.equal(
    headingAnchor('Why `stemcell_references` is `bosh-azure-stemcell-mirror`'),
    'why-stemcell_references-is-bosh-azure-stemcell-mirror',
  );
});

test('every relative link in the documents leads to an existing file and heading', () => {
  const broken: string[] = [];
  for (const file of documents()) {
    for (const link of relativeLinks(file)) {
      const [path = '', anchor] = link.split('#', 2);
      const target = path === '' ? file : join(dirname(file), decodeURIComponent(path));
      const where = `${relative(root, file)}: ${link}`;
      if (!existsSync(target)) broken.push(`${where} (no such file)`);
      else if (anchor !== undefined && statSync(target).isFile() && target.endsWith('.md')) {
        if (!anchorsOf(target).has(anchor)) broken.push(`${where} (no such heading)`);
      }
    }
  }
  assert.deepEqual(broken, []);
});

test('the README links every page of docs/ and CONTRIBUTING.md', () => {
  const linked = new Set(relativeLinks(join(root, 'README.md')).map((link) => link.split('#')[0]));
  const pages = documents()
    .slice(1)
    .map((file) => relative(root, file).split('\\').join('/'));
  assert.deepEqual(
    pages.filter((page) => !linked.has(page)),
    [],
  );
});

test('no file of the repository refers to design notes kept outside it', () => {
  const files = repositoryFiles();
  assert.ok(
    files.some((file) => file.endsWith('README.md')),
    'the walk finds the repository',
  );
  const offending = files.flatMap((file) => {
    const text = readFileSync(file, 'utf8');
    return OUTSIDE_REFERENCES.filter((reference) => text.includes(reference)).map(
      (reference) => `${relative(root, file)}: ${reference}`,
    );
  });
  assert.deepEqual(offending, []);
});
