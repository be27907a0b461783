import { ArmError } from './arm-http.js';
import { asObject, sameName } from './json.js';
import type { Json } from './json.js';

const armAudiences = ['https://management.azure.com', 'https://management.core.windows.net'];
// Entra ID access tokens are checked with a clock skew of 5 minutes (Microsoft.IdentityModel's default).
const clockSkewSeconds = 300;

/**
 * ARM's authentication of a bearer token: a JWT for the ARM audience, within its lifetime, issued by the
 * subscription's tenant. The only state is that tenant, learnt from the first token when not configured.
 */
export class TokenValidator {
  constructor(
    private tenant: string | undefined,
    /** The fake's own URL, an audience a client may also ask for (`${url}/.default`). */
    private readonly ownAudience: () => string,
  ) {}

  get tenantId(): string | undefined {
    return this.tenant;
  }

  /** The caller's object id (`oid`) once its token passes ARM's checks. */
  authenticate(authorization: string | undefined): string {
    if (authorization === undefined) {
      throw new ArmError(
        401,
        'AuthenticationFailed',
        "Authentication failed. The 'Authorization' header is missing.",
      );
    }
    const token = /^Bearer\s+(\S+)$/i.exec(authorization)?.[1];
    if (token === undefined) {
      throw new ArmError(
        401,
        'AuthenticationFailed',
        "Authentication failed. The 'Authorization' header is provided in an invalid format.",
      );
    }
    const claims = decodeJwtClaims(token);
    if (claims === undefined) {
      throw new ArmError(401, 'InvalidAuthenticationToken', 'The access token is invalid: it is not a JWT.');
    }
    const allowed = [...armAudiences, this.ownAudience()].flatMap((audience) => [audience, `${audience}/`]);
    if (typeof claims['aud'] !== 'string' || !allowed.includes(claims['aud'])) {
      throw new ArmError(
        401,
        'InvalidAuthenticationTokenAudience',
        `The access token has been obtained for wrong audience or resource '${String(claims['aud'])}'. It should exactly match with one of the allowed audiences ${allowed.map((a) => `'${a}'`).join(',')}.`,
      );
    }
    checkTokenLifetime(claims);
    this.checkIssuer(claims);
    const oid = claims['oid'];
    if (typeof oid !== 'string' || oid === '') {
      throw new ArmError(
        401,
        'InvalidAuthenticationToken',
        "The access token is invalid: it has no 'oid' claim.",
      );
    }
    return oid;
  }

  /**
   * A subscription belongs to one Entra tenant; ARM takes only tokens that tenant's STS issued
   * (`iss` = `https://sts.windows.net/<tenant>/`, as for v1 managed-identity tokens) and answers a token of another
   * tenant with 401 InvalidAuthenticationTokenTenant ("The access token is from the wrong issuer ...", listed in
   * https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/common-deployment-errors).
   */
  private checkIssuer(claims: Json): void {
    const issuer = claims['iss'];
    const tenant =
      typeof issuer === 'string'
        ? /^https:\/\/sts\.windows\.net\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/$/i.exec(
            issuer,
          )?.[1]
        : undefined;
    if (tenant === undefined) {
      throw new ArmError(
        401,
        'InvalidAuthenticationToken',
        `The access token is invalid: its issuer '${String(issuer)}' is not an Azure AD token issuer ('https://sts.windows.net/<tenant id>/').`,
      );
    }
    this.tenant ??= tenant;
    if (!sameName(tenant, this.tenant)) {
      throw new ArmError(
        401,
        'InvalidAuthenticationTokenTenant',
        `The access token is from the wrong issuer '${issuer as string}'. It must match the tenant 'https://sts.windows.net/${this.tenant}/' associated with this subscription. Please use the authority (URL) 'https://login.windows.net/${this.tenant}' to get the token.`,
      );
    }
  }
}

/**
 * ARM refuses a token without `exp` or `nbf`, one not yet valid and one expired (401; the expired one as
 * ExpiredAuthenticationToken, with the message below), each within the usual 5-minute clock skew.
 */
function checkTokenLifetime(claims: Json): void {
  const now = Date.now() / 1000;
  const exp = claims['exp'];
  const nbf = claims['nbf'];
  if (typeof exp !== 'number' || typeof nbf !== 'number') {
    const missing = typeof exp !== 'number' ? 'exp' : 'nbf';
    throw new ArmError(
      401,
      'InvalidAuthenticationToken',
      `The access token is invalid: it has no numeric '${missing}' claim.`,
    );
  }
  if (nbf - clockSkewSeconds > now) {
    throw new ArmError(
      401,
      'InvalidAuthenticationToken',
      `The access token is not valid yet: its 'nbf' UTC time '${new Date(nbf * 1000).toISOString()}' is later than current UTC time '${new Date().toISOString()}'.`,
    );
  }
  if (exp + clockSkewSeconds < now) {
    throw new ArmError(
      401,
      'ExpiredAuthenticationToken',
      `The access token expiry UTC time '${new Date(exp * 1000).toISOString()}' is earlier than current UTC time '${new Date().toISOString()}'.`,
    );
  }
}

function decodeJwtClaims(token: string): Json | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    return asObject(JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')));
  } catch {
    return undefined;
  }
}
