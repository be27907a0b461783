/**
 * Loads the function app under the stand-in host in a fresh process and prints what was registered, as
 * JSON on stdout: for tests of settings read when the app loads (a process registers only once).
 */

import { loadFunctionsApp, registeredFunctions } from './host.js';

await loadFunctionsApp();
process.stdout.write(JSON.stringify(registeredFunctions().map((f) => f.metadata)));
