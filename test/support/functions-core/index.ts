/**
 * A stand-in for `@azure/functions-core`, the module the Functions Node.js worker gives the app. The
 * `@azure/functions` library hands it every registration (`registerFunction`) and its programming model
 * (`setProgrammingModel`); keeping them here lets a test see exactly what the host would see, and invoke
 * a function the way the worker does. `host.ts` puts this module on the resolution path.
 */

/** A binding as the host receives it in the function metadata. */
export interface RpcBinding {
  type: string;
  direction: 'in' | 'out';
  name: string;
  [setting: string]: unknown;
}

export interface RpcFunctionMetadata {
  name: string;
  bindings: Record<string, RpcBinding>;
  retryOptions?: unknown;
}

/** Typed data on the wire between host and worker (the subset used here). */
export interface RpcTypedData {
  string?: string;
  json?: string;
  bytes?: Uint8Array;
  http?: unknown;
}

export interface RpcParameterBinding {
  name: string;
  data: RpcTypedData;
}

export interface RpcInvocationResponse {
  invocationId: string;
  outputData?: RpcParameterBinding[];
  returnValue?: RpcTypedData;
}

export interface CoreInvocationContext {
  invocationId: string;
  request: { inputData: RpcParameterBinding[]; triggerMetadata?: Record<string, RpcTypedData> };
  metadata: RpcFunctionMetadata;
  state?: string;
  log(level: string, category: string, message: string): void;
}

export interface InvocationModel {
  getArguments(): Promise<{ context: unknown; inputs: unknown[] }>;
  invokeFunction(context: unknown, inputs: unknown[], handler: FunctionCallback): Promise<unknown>;
  getResponse(context: unknown, result: unknown): Promise<RpcInvocationResponse>;
}

export interface ProgrammingModel {
  name: string;
  version: string;
  getInvocationModel(context: CoreInvocationContext): InvocationModel;
}

export type FunctionCallback = (...args: unknown[]) => unknown;

export interface RegisteredFunction {
  metadata: RpcFunctionMetadata;
  handler: FunctionCallback;
}

export interface Disposable {
  dispose(): void;
}

export const registeredFunctions: RegisteredFunction[] = [];
export const registeredHooks: Array<{ hookName: string; callback: unknown }> = [];
export const systemLog: Array<{ level: string; category: string; message: string }> = [];
let programmingModel: ProgrammingModel | undefined;

export function setProgrammingModel(model: ProgrammingModel): void {
  programmingModel = model;
}

export function getProgrammingModel(): ProgrammingModel {
  if (programmingModel === undefined)
    throw new Error('no programming model has been set: no function was registered');
  return programmingModel;
}

export function registerFunction(metadata: RpcFunctionMetadata, handler: FunctionCallback): Disposable {
  if (registeredFunctions.some((f) => f.metadata.name === metadata.name)) {
    throw new Error(`a function named "${metadata.name}" is already registered`);
  }
  const registration = { metadata, handler };
  registeredFunctions.push(registration);
  return { dispose: () => void registeredFunctions.splice(registeredFunctions.indexOf(registration), 1) };
}

export function registerHook(hookName: string, callback: unknown): Disposable {
  const hook = { hookName, callback };
  registeredHooks.push(hook);
  return { dispose: () => void registeredHooks.splice(registeredHooks.indexOf(hook), 1) };
}

export function log(level: string, category: string, message: string): void {
  systemLog.push({ level, category, message });
}
