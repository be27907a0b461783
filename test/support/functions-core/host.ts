/**
 * The part of the Functions host a test needs: it resolves `@azure/functions-core` to the stand-in
 * beside this file, loads the app's compiled function files as the host does (`main`:
 * `dist/functions/*.js`), and invokes a function through the programming model the app registered,
 * with RPC-shaped input, exactly as the Node.js worker does.
 */

import { randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { registerHooks } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as core from './index.js';
import type {
  RegisteredFunction,
  RpcBinding,
  RpcInvocationResponse,
  RpcParameterBinding,
  RpcTypedData,
} from './index.js';

const standInUrl = new URL('./index.js', import.meta.url).href;
registerHooks({
  resolve: (specifier, context, nextResolve) =>
    specifier === '@azure/functions-core'
      ? { url: standInUrl, shortCircuit: true }
      : nextResolve(specifier, context),
});

/** dist/functions/, seen from dist/test/support/functions-core/. */
const functionsDir = new URL('../../../functions/', import.meta.url);

let loaded: Promise<void> | undefined;

/** Imports every compiled function file once, like the host's `main` glob. Set process.env first. */
export function loadFunctionsApp(): Promise<void> {
  loaded ??= (async () => {
    const files = (await readdir(fileURLToPath(functionsDir))).filter((f) => f.endsWith('.js')).sort();
    for (const file of files) await import(new URL(file, functionsDir).href);
  })();
  return loaded;
}

export function registeredFunctions(): readonly RegisteredFunction[] {
  return core.registeredFunctions;
}

export function registeredFunction(name: string): RegisteredFunction {
  const found = core.registeredFunctions.find((f) => f.metadata.name === name);
  if (!found) throw new Error(`no function named "${name}" is registered`);
  return found;
}

/** The one binding of `type` that `name` declares. */
export function bindingOf(name: string, type: string): RpcBinding {
  const bindings = Object.values(registeredFunction(name).metadata.bindings).filter((b) => b.type === type);
  if (bindings.length !== 1) throw new Error(`"${name}" has ${bindings.length} bindings of type ${type}`);
  return bindings[0] as RpcBinding;
}

export interface WorkerLogLine {
  level: string;
  category: string;
  message: string;
}

export interface Invocation {
  response: RpcInvocationResponse;
  logs: WorkerLogLine[];
}

/** Input for one binding, by binding type (the generated binding names are an implementation detail). */
export type InputsByType = Record<string, RpcTypedData>;

/** Invokes a registered function the way the worker does: arguments from RPC data, response to RPC data. */
export async function invokeFunction(name: string, inputs: InputsByType): Promise<Invocation> {
  const fn = registeredFunction(name);
  const inputData: RpcParameterBinding[] = Object.entries(inputs).map(([type, data]) => ({
    name: bindingOf(name, type).name,
    data,
  }));
  const logs: WorkerLogLine[] = [];
  const model = core.getProgrammingModel().getInvocationModel({
    invocationId: randomUUID(),
    request: { inputData, triggerMetadata: {} },
    metadata: fn.metadata,
    log: (level, category, message) => logs.push({ level, category, message }),
  });
  const { context, inputs: args } = await model.getArguments();
  const result = await model.invokeFunction(context, args, fn.handler);
  return { response: await model.getResponse(context, result), logs };
}

export function jsonData(value: unknown): RpcTypedData {
  return { json: JSON.stringify(value) };
}

/** The value a non-HTTP function returned. */
export function returnedJson(response: RpcInvocationResponse): unknown {
  const value = response.returnValue;
  if (value?.json !== undefined) return JSON.parse(value.json);
  if (value?.string !== undefined) return JSON.parse(value.string);
  return undefined;
}

export interface HttpRequestInit {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: string;
  /** Route parameters, as the host extracts them from the function's route template. */
  params?: Record<string, string>;
}

/** An HTTP trigger's input as the host sends it (RpcHttp). */
export function httpData(init: HttpRequestInit): RpcTypedData {
  return {
    http: {
      method: init.method,
      url: init.url,
      headers: init.headers ?? {},
      body: init.body === undefined ? {} : { string: init.body },
      params: init.params ?? {},
      query: Object.fromEntries(new URL(init.url).searchParams),
    },
  };
}

export interface HttpResult {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The HTTP response the host would send, decoded from the RPC response. */
export function httpResult(response: RpcInvocationResponse): HttpResult {
  const http = response.returnValue?.http as
    { statusCode: string; headers: Record<string, string>; body?: RpcTypedData } | undefined;
  if (http === undefined) throw new Error('the function returned no HTTP response');
  const bytes = http.body?.bytes;
  return {
    status: Number(http.statusCode),
    headers: http.headers,
    body: bytes !== undefined ? Buffer.from(bytes).toString('utf8') : (http.body?.string ?? ''),
  };
}
