/**
 * Progress on stderr: a redrawn bar on a terminal, plain throttled lines otherwise (logs, CI, pipes).
 */

import type { ProgressEvent } from './services.js';

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

export function formatBytes(bytes: number): string {
  return bytes >= GIB ? `${(bytes / GIB).toFixed(2)} GiB` : `${(bytes / MIB).toFixed(1)} MiB`;
}

export interface ProgressReporter {
  update(event: ProgressEvent): void;
  /** Writes a log line without tearing the bar. */
  line(text: string): void;
  done(): void;
}

export function createProgressReporter(stream: NodeJS.WriteStream): ProgressReporter {
  return stream.isTTY ? new TerminalBar(stream) : new PlainLines(stream);
}

function describe(event: ProgressEvent): { label: string; fraction?: number; amount: string } {
  const label = `${event.series} ${event.version} ${event.phase}`;
  const amount =
    event.total !== undefined && event.total > 0
      ? `${formatBytes(event.bytes)} / ${formatBytes(event.total)}`
      : formatBytes(event.bytes);
  return event.total !== undefined && event.total > 0
    ? { label, fraction: Math.min(1, event.bytes / event.total), amount }
    : { label, amount };
}

class TerminalBar implements ProgressReporter {
  private drawn = false;
  private lastDraw = 0;
  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(event: ProgressEvent): void {
    const { label, fraction, amount } = describe(event);
    // A download reports every chunk: redraw at most ten times a second, and always at 100 %.
    const now = performance.now();
    if (now - this.lastDraw < 100 && fraction !== 1) return;
    this.lastDraw = now;
    const width = 30;
    const bar =
      fraction === undefined
        ? ''
        : `[${'#'.repeat(Math.round(fraction * width)).padEnd(width, '.')}] ${(fraction * 100).toFixed(0).padStart(3)}% `;
    const text = `${label} ${bar}${amount}`;
    this.stream.write(`\r\x1b[2K${text.slice(0, (this.stream.columns || 120) - 1)}`);
    this.drawn = true;
  }

  line(text: string): void {
    this.stream.write(`${this.drawn ? '\r\x1b[2K' : ''}${text}\n`);
    this.drawn = false;
  }

  done(): void {
    if (this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }
}

/** One line per 10 % (or per 256 MiB when the total is unknown), so logs stay readable. */
class PlainLines implements ProgressReporter {
  private readonly lastStep = new Map<string, number>();
  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(event: ProgressEvent): void {
    const { label, fraction, amount } = describe(event);
    const step = fraction !== undefined ? Math.floor(fraction * 10) : Math.floor(event.bytes / (256 * MIB));
    if (this.lastStep.get(label) === step) return;
    this.lastStep.set(label, step);
    const percent = fraction !== undefined ? ` ${(fraction * 100).toFixed(0)}%` : '';
    this.stream.write(`${label}${percent} ${amount}\n`);
  }

  line(text: string): void {
    this.stream.write(`${text}\n`);
  }

  done(): void {}
}
