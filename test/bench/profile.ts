/**
 * Summarises a V8 CPU profile (`node --cpu-prof`) of the mirror: main-thread time by kind of work and the
 * functions with the most self time. zlib inflates on libuv's thread pool, so its time shows up in the
 * process's CPU seconds but not here (the main thread is idle while it waits for zlib).
 */

import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  totalMs: number;
  categories: Array<{ category: string; ms: number }>;
  functions: Array<{ name: string; ms: number }>;
}

const CATEGORIES: Array<[string, (f: ProfileNode['callFrame']) => boolean]> = [
  ['idle (waiting: network, disk, zlib threads)', (f) => f.functionName === '(idle)'],
  ['garbage collection', (f) => f.functionName === '(garbage collector)'],
  ['hashing (SHA-1, SHA-256)', (f) => /crypto|hash/i.test(f.url) || /^(update|digest)$/.test(f.functionName)],
  ['zlib glue (main thread)', (f) => /node:zlib|internal\/zlib/.test(f.url)],
  ['tar parsing (node-tar)', (f) => /node_modules\/(tar|minipass)/.test(f.url)],
  ['Azure SDK', (f) => /node_modules\/@azure/.test(f.url)],
  ['fetch / undici', (f) => /undici|internal\/deps\/undici|web\/|webstreams/.test(f.url)],
  ['TLS, sockets, HTTP', (f) => /_tls|tls|net|_http|http/.test(f.url)],
  ['streams', (f) => /internal\/streams/.test(f.url)],
  ['file system', (f) => /internal\/fs|node:fs/.test(f.url)],
  ['mirror code (dist/src)', (f) => /\/dist\/src\//.test(f.url)],
  ['native / program', (f) => f.url === ''],
];

function category(frame: ProfileNode['callFrame']): string {
  return CATEGORIES.find(([, test]) => test(frame))?.[0] ?? 'other JavaScript';
}

export async function summariseProfile(path: string): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfMs = new Map<number, number>();
  let totalMs = 0;
  profile.samples.forEach((id, index) => {
    const ms = (profile.timeDeltas[index] ?? 0) / 1000;
    selfMs.set(id, (selfMs.get(id) ?? 0) + ms);
    totalMs += ms;
  });
  const categories = new Map<string, number>();
  const functions = new Map<string, number>();
  for (const [id, ms] of selfMs) {
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    categories.set(category(frame), (categories.get(category(frame)) ?? 0) + ms);
    const where =
      frame.url === ''
        ? ''
        : ` ${frame.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${frame.lineNumber + 1}`;
    const name = `${frame.functionName || '(anonymous)'}${where}`;
    functions.set(name, (functions.get(name) ?? 0) + ms);
  }
  const sorted = (map: Map<string, number>) =>
    [...map].sort((a, b) => b[1] - a[1]).map(([key, ms]) => ({ key, ms }));
  return {
    totalMs,
    categories: sorted(categories).map(({ key, ms }) => ({ category: key, ms })),
    functions: sorted(functions)
      .filter(({ key }) => key !== '(idle)')
      .slice(0, 12)
      .map(({ key, ms }) => ({ name: key, ms })),
  };
}
