/**
 * GET over https only, redirects included: bosh.io's listing names every download and checksum, and its
 * download links redirect to a bucket, so one hop over plain http would let a man in the middle choose both.
 * fetch's own `redirect: 'follow'` hides the hops, so they are followed here, one by one.
 */

/** The redirects fetch would follow; 300 and 304 are answers, not hops. */
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Real bosh.io takes one hop (the /d/ link to the bucket); a chain this long is a loop or an attack. */
export const MAX_REDIRECTS = 5;

/** A URL or a redirect the mirror refuses to follow: not https, or too many hops. Retrying does not help. */
export class HttpsRequiredError extends Error {
  override name = 'HttpsRequiredError';
  readonly transient = false;
}

/** The URL without query string or fragment: signed URLs must not end up in logs. */
export function displayUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return url.replace(/[?#].*$/, '');
  }
}

/**
 * GETs `url` with `init`, following up to MAX_REDIRECTS redirects, each of which must stay on https (the
 * same headers go with every hop, as fetch sends them). Answers a non-redirect response and the URL it came
 * from; throws HttpsRequiredError for an http URL or hop, naming its host.
 */
export async function fetchOverHttps(
  url: string,
  init: Omit<RequestInit, 'redirect'>,
): Promise<{ response: Response; url: string }> {
  let current = httpsUrl(url, undefined);
  for (let hops = 0; ; hops++) {
    const response = await fetch(current, { ...init, redirect: 'manual' });
    const location = response.headers.get('location');
    if (!REDIRECT_STATUSES.has(response.status) || location === null) return { response, url: current };
    await response.body?.cancel().catch(() => undefined);
    if (hops >= MAX_REDIRECTS) {
      throw new HttpsRequiredError(
        `${displayUrl(url)} redirects more than ${MAX_REDIRECTS} times (last to ${displayUrl(location)}); refused, it looks like a redirect loop`,
      );
    }
    current = httpsUrl(new URL(location, current).href, current);
  }
}

function httpsUrl(url: string, from: string | undefined): string {
  const parsed = new URL(url);
  if (parsed.protocol === 'https:') return parsed.href;
  const what =
    from === undefined
      ? `${displayUrl(url)} is not an https URL`
      : `${displayUrl(from)} redirects to ${parsed.protocol}//${parsed.host}`;
  throw new HttpsRequiredError(
    `${what}: refused, https is required (over plain http anyone on the path could swap the stemcell and its checksums)`,
  );
}
