import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { ContainerClient } from '@azure/storage-blob';
import { SeriesLockLost, SeriesLocks, type SeriesLockClaim } from '../../src/series-lock.js';
import { identityStorage } from '../support/identity-storage.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';

const storage = identityStorage();

/** A fresh container, reached as the mirror reaches it: managed-identity token. */
function newContainer(): ContainerClient {
  return storage.newContainer('locks');
}

function locksIn(container: ContainerClient, staleAfterSeconds = 600): SeriesLocks {
  return new SeriesLocks({ container, staleAfterSeconds });
}

function claim(): SeriesLockClaim {
  return { series: SERIES, leaseId: randomUUID() };
}

/** The lock blob as an administrator sees it (shared key). */
async function lockBlob(container: ContainerClient) {
  return new ContainerClient(container.url, storage.azurite.sharedKeyCredential)
    .getBlobClient(`locks/${SERIES}`)
    .getProperties();
}

describe('series lock', () => {
  test('a first run takes the series, creating the container, and the blob says who and since when', async () => {
    const container = newContainer();
    const before = Date.now();

    const taken = await locksIn(container).acquire(claim(), 'command line (pid 1 on host-a)');

    assert.deepEqual(taken, { acquired: true });
    const properties = await lockBlob(container);
    assert.equal(properties.leaseState, 'leased');
    assert.equal(properties.leaseDuration, 'infinite');
    assert.equal(properties.metadata?.['holder'], 'command line (pid 1 on host-a)');
    assert.ok(Date.parse(properties.metadata?.['acquired_at'] ?? '') >= before - 1000);
    assert.ok(Date.parse(properties.metadata?.['heartbeat_at'] ?? '') >= before - 1000);
  });

  test('a second run is refused while the first holds the series, and told who holds it and since when', async () => {
    const locks = locksIn(newContainer());
    await locks.acquire(claim(), 'orchestration mirror-x (instance 7 of app-a)');
    const first = await locks.holderOf(SERIES);

    const second = await locks.acquire(claim(), 'command line (pid 2 on host-b)');

    assert.equal(second.acquired, false);
    assert.ok(!second.acquired);
    assert.equal(second.holder, 'orchestration mirror-x (instance 7 of app-a)');
    assert.equal(second.since, first?.since);
    assert.match(second.heartbeatAt, /^\d{4}-\d\d-\d\dT/);
  });

  test('the same run taking its series again (a retried step) keeps it, and its start time', async () => {
    const locks = locksIn(newContainer());
    const mine = claim();
    await locks.acquire(mine, 'run a');
    const since = (await locks.holderOf(SERIES))?.since;
    await sleep(1100);

    assert.deepEqual(await locks.acquire(mine, 'run a'), { acquired: true });
    assert.equal((await locks.holderOf(SERIES))?.since, since);
  });

  test('the holder heartbeats; a run that does not hold the series gets SeriesLockLost', async () => {
    const locks = locksIn(newContainer());
    const mine = claim();
    await locks.acquire(mine, 'run a');

    await locks.heartbeat(mine);
    await assert.rejects(locks.heartbeat(claim()), SeriesLockLost);
  });

  test('a released series is taken by the next run at once', async () => {
    const locks = locksIn(newContainer());
    const first = claim();
    await locks.acquire(first, 'run a');

    assert.equal(await locks.release(first), true);
    assert.deepEqual(await locks.acquire(claim(), 'run b'), { acquired: true });
    assert.equal((await locks.holderOf(SERIES))?.holder, 'run b');
  });

  test('fault: runs that start at the same moment: exactly one takes the series', async () => {
    const container = newContainer();
    const outcomes = await Promise.all(
      Array.from({ length: 6 }, (_, i) => locksIn(container).acquire(claim(), `run ${i}`)),
    );

    assert.equal(outcomes.filter((o) => o.acquired).length, 1, JSON.stringify(outcomes));
    const winner = outcomes.findIndex((o) => o.acquired);
    assert.equal((await locksIn(container).holderOf(SERIES))?.holder, `run ${winner}`);
  });

  test('fault: a holder that died (no heartbeat for the staleness bound) is taken over; it then learns it lost the series', async () => {
    const container = newContainer();
    const dead = claim();
    await locksIn(container, 2).acquire(dead, 'command line (pid 9 on host-a)');
    const next = claim();

    const early = await locksIn(container, 2).acquire(next, 'run b');
    assert.equal(early.acquired, false, 'taken over before the staleness bound');
    await sleep(3100);
    const late = await locksIn(container, 2).acquire(next, 'run b');

    assert.equal(late.acquired, true);
    assert.ok(late.acquired);
    assert.equal(late.tookOverFrom?.holder, 'command line (pid 9 on host-a)');
    await assert.rejects(locksIn(container, 2).heartbeat(dead), (error: unknown) => {
      assert.ok(error instanceof SeriesLockLost);
      assert.match(error.message, /no longer holds series .*: run b took it over/);
      return true;
    });
    assert.equal(await locksIn(container, 2).release(dead), false);
    assert.equal((await locksIn(container, 2).holderOf(SERIES))?.holder, 'run b');
  });

  test('fault: a holder busy in one long step longer than the staleness bound is not taken over', async () => {
    const container = newContainer();
    const busy = claim();
    const locks = locksIn(container, 2);
    await locks.acquire(busy, 'run a');

    const contender = await locks.holdDuring(busy, async () => {
      await sleep(3500);
      return locksIn(container, 2).acquire(claim(), 'run b');
    });

    assert.equal(contender.acquired, false);
    await locks.heartbeat(busy);
  });

  test('a run that lost its series is stopped before its step starts', async () => {
    const locks = locksIn(newContainer());
    await locks.acquire(claim(), 'run a');
    let ran = false;

    await assert.rejects(
      locks.holdDuring(claim(), () => {
        ran = true;
        return Promise.resolve();
      }),
      SeriesLockLost,
    );
    assert.equal(ran, false);
  });
});
