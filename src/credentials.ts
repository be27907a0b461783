/**
 * Credentials: the one place that decides how the mirror authenticates to Azure.
 * Identity-based only: no account keys or connection strings.
 */
import { DefaultAzureCredential, ManagedIdentityCredential } from '@azure/identity';
import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/identity';
import { errorMessage } from './failures.js';

/**
 * No credential of the chain could even try (nobody signed in, no managed identity here): the one line an
 * operator acts on. `details` holds what each credential said, for `--verbose` and the Functions log.
 */
export class AzureSignInError extends Error {
  readonly transient = false;
  constructor(
    message: string,
    readonly details: string,
  ) {
    super(message);
    this.name = 'AzureSignInError';
  }
}

const NOT_SIGNED_IN = 'not signed in to Azure: run `az login` (or set AZURE_MANAGED_IDENTITY_ID in Azure)';
const NO_MANAGED_IDENTITY =
  'AZURE_MANAGED_IDENTITY_ID is set but there is no managed identity here: unset it on a workstation and run `az login`';

/** The AzureSignInError in an error's cause chain, if any (SDKs and gallery errors may wrap it). */
export function signInErrorOf(error: unknown): AzureSignInError | undefined {
  for (let current = error, depth = 0; depth < 8; depth++) {
    if (current instanceof AzureSignInError) return current;
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function isUnavailable(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  if (name === 'CredentialUnavailableError' || name === 'AuthenticationRequiredError') return true;
  // A chain whose every credential was unavailable (a real refusal is thrown as itself, not aggregated).
  const errors = (error as { errors?: unknown } | null)?.errors;
  return name === 'AggregateAuthenticationError' && Array.isArray(errors) && errors.every(isUnavailable);
}

function detailsOf(error: unknown): string {
  const errors = (error as { errors?: unknown }).errors;
  const parts = Array.isArray(errors) ? errors.map(errorMessage) : [errorMessage(error)];
  return parts.map((part) => `  ${part.replace(/\n/g, '\n    ')}`).join('\n');
}

/** Turns "no credential available" into an AzureSignInError; every other failure passes unchanged. */
class SignInAdvisingCredential implements TokenCredential {
  constructor(
    private readonly inner: TokenCredential,
    private readonly advice: string,
  ) {}

  async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken | null> {
    try {
      return await this.inner.getToken(scopes, options);
    } catch (error) {
      if (!isUnavailable(error)) throw error;
      throw new AzureSignInError(this.advice, `the Azure credentials said:\n${detailsOf(error)}`);
    }
  }
}

/**
 * A user-assigned managed identity when its client id is given (`AZURE_MANAGED_IDENTITY_ID`),
 * otherwise DefaultAzureCredential (system-assigned identity in Azure, az login on a workstation).
 */
export function createAzureCredential(managedIdentityClientId?: string): TokenCredential {
  // An empty app setting means "not configured", not "a client id that is empty".
  if (managedIdentityClientId !== undefined && managedIdentityClientId.trim() !== '') {
    return new SignInAdvisingCredential(
      new ManagedIdentityCredential({ clientId: managedIdentityClientId.trim() }),
      NO_MANAGED_IDENTITY,
    );
  }
  return new SignInAdvisingCredential(new DefaultAzureCredential(), NOT_SIGNED_IN);
}
