import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  isDiskFull,
  isTransientError,
  isTransientNetworkCode,
  isTransientStatus,
  isUnreachableError,
} from '../../src/failures.js';

const statuses: Array<[number, boolean]> = [
  [200, false],
  [206, false],
  [304, false],
  [400, false],
  [401, false],
  [403, false],
  [404, false],
  [407, false],
  [408, true],
  [409, false],
  [412, false],
  [416, false],
  [422, false],
  [428, false],
  [429, true],
  [499, false],
  [500, true],
  [501, true],
  [502, true],
  [503, true],
  [504, true],
  [507, true],
  [599, true],
  [600, false],
];

for (const [status, transient] of statuses) {
  test(`HTTP ${status} is ${transient ? 'transient' : 'permanent'}`, () => {
    assert.equal(isTransientStatus(status), transient);
    // The same answer whichever property a client library puts the status in.
    assert.equal(isTransientError({ statusCode: status }), transient);
    assert.equal(isTransientError({ status }), transient);
  });
}

const codes: Array<[string, boolean]> = [
  ['ECONNRESET', true],
  ['ECONNREFUSED', true],
  ['ECONNABORTED', true],
  ['EPIPE', true],
  ['UND_ERR_SOCKET', true],
  ['ETIMEDOUT', true],
  ['UND_ERR_CONNECT_TIMEOUT', true],
  ['UND_ERR_HEADERS_TIMEOUT', true],
  ['UND_ERR_BODY_TIMEOUT', true],
  ['EAI_AGAIN', true],
  ['ENOTFOUND', true],
  ['ENETUNREACH', true],
  ['EHOSTUNREACH', true],
  ['ENETDOWN', true],
  ['REQUEST_SEND_ERROR', true],
  ['ENOSPC', false],
  ['EACCES', false],
  ['ENOENT', false],
  ['Z_DATA_ERROR', false],
  ['TAR_BAD_ARCHIVE', false],
  ['CERT_HAS_EXPIRED', false],
  ['ResourceNotFound', false],
  ['econnreset', false],
];

for (const [code, transient] of codes) {
  test(`network code ${code} is ${transient ? 'transient' : 'permanent'}`, () => {
    assert.equal(isTransientNetworkCode(code), transient);
    assert.equal(isTransientError(Object.assign(new Error(code), { code })), transient);
  });
}

test('an error that says whether it is transient is taken at its word, over its status and code', () => {
  assert.equal(isTransientError({ transient: false, statusCode: 503, code: 'ECONNRESET' }), false);
  assert.equal(isTransientError({ transient: true, statusCode: 400 }), true);
});

test('a status decides before a network code: an HTTP answer arrived', () => {
  assert.equal(isTransientError({ statusCode: 404, code: 'REQUEST_SEND_ERROR' }), false);
  assert.equal(isTransientError({ statusCode: 404, cause: { code: 'ECONNRESET' } }), false);
});

test("fetch's TypeError is judged by the network error it wraps", () => {
  const reset = new TypeError('fetch failed', {
    cause: Object.assign(new Error('reset'), { code: 'ECONNRESET' }),
  });
  const badCertificate = new TypeError('fetch failed', {
    cause: Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' }),
  });
  assert.equal(isTransientError(reset), true);
  assert.equal(isTransientError(badCertificate), false);
});

test('a TimeoutError (AbortSignal.timeout) is transient; a caller’s AbortError is not', () => {
  assert.equal(isTransientError(new DOMException('timed out', 'TimeoutError')), true);
  assert.equal(isTransientError(new DOMException('aborted', 'AbortError')), false);
});

test('plain errors, strings and nothing at all are permanent', () => {
  for (const error of [new Error('checksum mismatch'), 'ECONNRESET', undefined, null, 503]) {
    assert.equal(isTransientError(error), false, String(error));
  }
});

test('causes that loop back do not hang the decision', () => {
  const own: { cause?: unknown } = {};
  own.cause = own;
  const first: { cause?: unknown } = {};
  first.cause = { cause: first };
  assert.equal(isTransientError(own), false);
  assert.equal(isTransientError(first), false);
});

test('an unknown host or a refused connection is unreachable, wherever it sits in the cause chain', () => {
  const dns = Object.assign(new Error('getaddrinfo ENOTFOUND bosh.example'), { code: 'ENOTFOUND' });
  const offline = Object.assign(new Error('getaddrinfo EAI_AGAIN bosh.io'), { code: 'EAI_AGAIN' });
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
  assert.equal(isUnreachableError(dns), true);
  assert.equal(isUnreachableError(offline), true);
  assert.equal(isUnreachableError(new TypeError('fetch failed', { cause: refused })), true);
  assert.equal(isUnreachableError(Object.assign(new Error('reset'), { code: 'ECONNRESET' })), false);
  assert.equal(isUnreachableError(Object.assign(new Error('busy'), { statusCode: 503 })), false);
  assert.equal(isUnreachableError('ENOTFOUND'), false);
});

test('a full disk (ENOSPC, EDQUOT), bare or wrapped, is disk full and permanent', () => {
  for (const code of ['ENOSPC', 'EDQUOT']) {
    const full = Object.assign(new Error(`${code}: no space left on device, write`), { code });
    const wrapped = new Error('extraction failed', { cause: full });
    assert.equal(isDiskFull(full), true, code);
    assert.equal(isDiskFull(wrapped), true, code);
    assert.equal(isTransientError(full), false, code);
    assert.equal(isTransientError(wrapped), false, code);
  }
  assert.equal(isDiskFull(Object.assign(new Error('reset'), { code: 'ECONNRESET' })), false);
  assert.equal(isDiskFull(undefined), false);
});
