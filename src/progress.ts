/**
 * Progress on stderr: a redrawn bar on a terminal, plain throttled lines otherwise (logs, CI, pipes). Either
 * way each phase ends with a summary line (bytes, seconds, MiB/s) that stays when the bar is erased.
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

const PAST_TENSE: Record<ProgressEvent['phase'], string> = { download: 'downloaded', upload: 'uploaded' };

/** `<series> <version>: uploaded 40.4 MiB in 2.1 s (19.2 MiB/s)`: what a finished phase leaves behind. */
export function phaseSummary(event: ProgressEvent, seconds: number): string {
  const rate = seconds > 0 ? ` (${(event.bytes / MIB / seconds).toFixed(1)} MiB/s)` : '';
  return `${event.series} ${event.version}: ${PAST_TENSE[event.phase]} ${formatBytes(event.bytes)} in ${seconds.toFixed(1)} s${rate}`;
}

function amountOf(event: ProgressEvent): string {
  return event.total !== undefined && event.total > 0
    ? `${formatBytes(event.bytes)} / ${formatBytes(event.total)}`
    : formatBytes(event.bytes);
}

function fractionOf(event: ProgressEvent): number | undefined {
  return event.total !== undefined && event.total > 0 ? Math.min(1, event.bytes / event.total) : undefined;
}

const BAR_MAX = 30;
const BAR_MIN = 10;

/**
 * One bar line that fits `columns` (less one, so the cursor never wraps): the percentage and the sizes always
 * show; the bar shrinks first, then the series name is shortened in the middle.
 */
export function formatBar(event: ProgressEvent, columns: number): string {
  const width = Math.max(20, columns) - 1;
  const fraction = fractionOf(event);
  const tail = `${fraction === undefined ? '' : `${(fraction * 100).toFixed(0).padStart(3)}% `}${amountOf(event)}`;
  const label = (series: string) => `${series} ${event.version}: ${event.phase}`;
  const fixed = (series: string) => label(series).length + 1 + tail.length;
  const barFor = (room: number) => {
    if (fraction === undefined || room < BAR_MIN + 3) return '';
    const cells = Math.min(BAR_MAX, room - 3);
    return `[${'#'.repeat(Math.round(fraction * cells)).padEnd(cells, '.')}] `;
  };
  let series = event.series;
  if (fixed(series) + BAR_MIN + 3 > width) {
    // Keep both ends of the name (`bosh-azure-…-go_agent`): they tell series apart.
    const keep = Math.max(8, series.length - (fixed(series) + BAR_MIN + 3 - width) - 1);
    if (keep < series.length) {
      const head = Math.ceil(keep / 2);
      series = `${series.slice(0, head)}…${series.slice(series.length - (keep - head))}`;
    }
  }
  const line = `${label(series)} ${barFor(width - fixed(series))}${tail}`;
  return line.length > width ? line.slice(line.length - width) : line;
}

/** When each phase started and whether its summary was written, so each phase is summed up once. */
class PhaseClock {
  private readonly started = new Map<string, number>();
  private readonly finished = new Set<string>();

  /** The summary line, once, when this event completes its phase. */
  observe(event: ProgressEvent): string | undefined {
    const key = `${event.series} ${event.version} ${event.phase}`;
    const now = performance.now();
    if (!this.started.has(key) || (this.finished.has(key) && event.bytes < (event.total ?? 0))) {
      // A phase that starts again (a retry) is timed afresh.
      this.started.set(key, now);
      this.finished.delete(key);
    }
    if (this.finished.has(key) || fractionOf(event) !== 1) return undefined;
    this.finished.add(key);
    return phaseSummary(event, (now - (this.started.get(key) ?? now)) / 1000);
  }
}

class TerminalBar implements ProgressReporter {
  private drawn = false;
  private lastDraw = 0;
  private readonly clock = new PhaseClock();
  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(event: ProgressEvent): void {
    const summary = this.clock.observe(event);
    if (summary !== undefined) {
      this.line(summary);
      return;
    }
    // A download reports every chunk: redraw at most ten times a second.
    const now = performance.now();
    if (now - this.lastDraw < 100) return;
    this.lastDraw = now;
    this.stream.write(`\r\x1b[2K${formatBar(event, this.stream.columns || 80)}`);
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
  private readonly clock = new PhaseClock();
  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(event: ProgressEvent): void {
    const label = `${event.series} ${event.version}: ${event.phase}`;
    const fraction = fractionOf(event);
    const step = fraction !== undefined ? Math.floor(fraction * 10) : Math.floor(event.bytes / (256 * MIB));
    if (this.lastStep.get(label) !== step) {
      this.lastStep.set(label, step);
      const percent = fraction !== undefined ? ` ${(fraction * 100).toFixed(0)}%` : '';
      this.stream.write(`${label}${percent} ${amountOf(event)}\n`);
    }
    const summary = this.clock.observe(event);
    if (summary !== undefined) this.stream.write(`${summary}\n`);
  }

  line(text: string): void {
    this.stream.write(`${text}\n`);
  }

  done(): void {}
}
