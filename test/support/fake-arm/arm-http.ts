import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Json } from './json.js';

/** ARM's error envelope, api-version and method checks, shared by every route of the fake. */
export interface ArmErrorBody {
  code: string;
  message: string;
}

/** One authenticated request, as the routes see it. */
export interface ArmRequest {
  method: string;
  url: URL;
  apiVersion: string;
  body: unknown;
  headers: IncomingHttpHeaders;
  /** The caller's object id (the `oid` of its token). */
  principalId: string;
}

export class ArmError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly target?: string,
  ) {
    super(message);
  }
}

// The version @azure/arm-compute 25.1.1 sends for every gallery call, and earlier real GalleryRP versions.
const supportedApiVersions = [
  '2025-12-03',
  '2025-03-03',
  '2024-03-03',
  '2023-07-03',
  '2022-08-03',
  '2022-03-03',
  '2022-01-03',
  '2021-10-01',
  '2021-07-01',
];

export function invalidParameter(target: string, message: string): ArmError {
  return new ArmError(400, 'InvalidParameter', message, target);
}

export function missingParameter(target: string): ArmError {
  return invalidParameter(target, `Required parameter '${target}' is missing (null).`);
}

export function notFound(path: string): ArmError {
  return new ArmError(404, 'NotFound', `The fake ARM serves only one Compute Gallery; nothing at '${path}'.`);
}

export function resourceNotFound(resource: string): ArmError {
  return new ArmError(
    404,
    'ResourceNotFound',
    `The Resource '${resource}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix`,
  );
}

export function invalidContent(reason: string): ArmError {
  return new ArmError(
    400,
    'InvalidRequestContent',
    `The request content was invalid and could not be deserialized: ${reason}.`,
  );
}

export function requireApiVersion(apiVersion: string | null): void {
  if (apiVersion === null || apiVersion === '') {
    throw new ArmError(
      400,
      'MissingApiVersionParameter',
      'The api-version query parameter (?api-version=) is required for all requests.',
    );
  }
  if (!supportedApiVersions.includes(apiVersion)) {
    throw new ArmError(
      400,
      'InvalidApiVersionParameter',
      `The api-version '${apiVersion}' is invalid for resource type 'galleries' in namespace 'Microsoft.Compute'. The supported api-versions are '${supportedApiVersions.join(', ')}'.`,
    );
  }
}

export function allowMethods(method: string, allowed: string[]): void {
  if (!allowed.includes(method)) {
    throw new ArmError(
      405,
      'MethodNotAllowed',
      `The HTTP method '${method}' is not supported here. Supported: ${allowed.join(', ')}.`,
    );
  }
}

/**
 * `If-None-Match: *` on a PUT: create only. ARM answers 412 when the resource exists, so a client that looked and
 * found nothing never overwrites what someone else created since.
 */
export function refuseIfExists(request: ArmRequest, exists: boolean, what: string): void {
  if (request.method !== 'PUT' || !exists) return;
  const condition = request.headers['if-none-match'];
  if (condition === undefined) return;
  if (condition.trim() === '*') {
    throw new ArmError(
      412,
      'PreconditionFailed',
      `The condition specified using HTTP conditional header(s) is not met: ${what} already exists (If-None-Match: *).`,
    );
  }
}

export function parseBody(raw: string): unknown {
  if (raw === '') return undefined;
  try {
    return JSON.parse(raw) as unknown;
  } catch (error) {
    throw invalidContent(error instanceof Error ? error.message : String(error));
  }
}

export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'x-ms-request-id': randomUUID(),
    ...headers,
  });
  res.end(text);
}

/** ARM's `{ error: { code, message, target? } }`; a 401 also says why in `WWW-Authenticate`. */
export function sendArmError(res: ServerResponse, error: ArmError): void {
  const payload: Json = { code: error.code, message: error.message };
  if (error.target !== undefined) payload['target'] = error.target;
  const headers: Record<string, string> = {};
  if (error.status === 401) {
    headers['www-authenticate'] =
      `Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token", error_description="${error.code}"`;
  }
  sendJson(res, error.status, { error: payload }, headers);
}
