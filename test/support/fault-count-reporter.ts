/**
 * node:test reporter for `npm test`: Node's own report (TAP when piped, as CI reads it; spec on a
 * terminal), plus one line `fault scenarios: N` counting the tests named `fault: ...` that ran.
 */

import { Readable } from 'node:stream';
import { spec, tap, type TestEvent } from 'node:test/reporters';
import { stripVTControlCharacters } from 'node:util';

/** The prefix that marks a test as a scenario of the fault suite (README "Reliability"). */
export const FAULT_PREFIX = 'fault:';

/** Node's closing block starts with this line (`# tests 12` in TAP, `ℹ tests 12` in spec). */
const CLOSING_BLOCK = /^\s*(?:#|ℹ) tests \d+\s*$/;

export function isFaultScenario(event: TestEvent): boolean {
  if (event.type !== 'test:pass' && event.type !== 'test:fail') return false;
  const { data } = event;
  // A suite is not a scenario, and a skipped or todo test did not show anything.
  if (data.details.type === 'suite' || data.skip !== undefined || data.todo !== undefined) return false;
  return data.name.startsWith(FAULT_PREFIX);
}

export default async function* faultCountReporter(
  source: AsyncGenerator<TestEvent, void>,
): AsyncGenerator<string, void> {
  let faults = 0;
  async function* counted(): AsyncGenerator<TestEvent, void> {
    for await (const event of source) {
      if (isFaultScenario(event)) faults += 1;
      yield event;
    }
  }
  const report: AsyncIterable<unknown> = process.stdout.isTTY
    ? Readable.from(counted()).pipe(spec())
    : tap(counted());
  let shown = false;
  for await (const chunk of report) {
    const text = String(chunk);
    // Before Node's closing block, so that its `# tests`/`# pass`/`# fail` lines stay the last ones.
    if (!shown && CLOSING_BLOCK.test(stripVTControlCharacters(text))) {
      shown = true;
      yield `fault scenarios: ${faults}\n`;
    }
    yield text;
  }
  if (!shown) yield `fault scenarios: ${faults}\n`;
}
