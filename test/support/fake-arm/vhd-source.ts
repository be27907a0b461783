import { BlobClient, RestError } from '@azure/storage-blob';
import type { StorageSharedKeyCredential } from '@azure/storage-blob';
import type { ArmErrorBody } from './arm-http.js';

export interface VhdStorage {
  blobEndpoint: string;
  accountName: string;
  sharedKeyCredential: StorageSharedKeyCredential;
}

export interface VhdInspection {
  error?: ArmErrorBody;
  virtualSize?: number;
}

const mebibyte = 1024 * 1024;
const vhdFooterSize = 512;
const vhdDiskTypes: Record<number, string> = { 2: 'Fixed', 3: 'Dynamic', 4: 'Differencing' };

/**
 * The storage account whose page blobs may be the VHD source of an image version, and the checks Azure makes
 * on such a blob while it copies it (read from Azurite with the shared key).
 */
export class VhdSources {
  constructor(private readonly storage: VhdStorage) {}

  get accountName(): string {
    return this.storage.accountName;
  }

  get blobEndpoint(): string {
    return this.storage.blobEndpoint;
  }

  isBlobOfAccount(uri: string): boolean {
    let parsed: URL;
    let endpoint: URL;
    try {
      parsed = new URL(uri);
      endpoint = new URL(this.storage.blobEndpoint);
    } catch {
      return false;
    }
    const endpointPath = endpoint.pathname.replace(/\/$/, '');
    const rest = parsed.pathname.startsWith(`${endpointPath}/`)
      ? parsed.pathname.slice(endpointPath.length + 1)
      : '';
    // container/blob: at least two path segments below the account.
    return parsed.origin.toLowerCase() === endpoint.origin.toLowerCase() && /^[^/]+\/.+/.test(rest);
  }

  /**
   * Azure accepts the PUT (201, Creating) and only reads the blob while it copies the image, so a bad
   * source surfaces as a Failed operation and a Failed version, not as a 400 on the PUT.
   */
  async inspect(uri: string): Promise<VhdInspection> {
    const blob = new BlobClient(uri, this.storage.sharedKeyCredential);
    const failed = (message: string): VhdInspection => ({ error: { code: 'InvalidParameter', message } });
    let length: number;
    try {
      const properties = await blob.getProperties();
      if (properties.blobType !== 'PageBlob') {
        return failed(
          `The source blob '${uri}' is a ${properties.blobType ?? 'blob of unknown type'}; only a page blob can be the VHD source of an image version.`,
        );
      }
      length = properties.contentLength ?? 0;
    } catch (error) {
      if (error instanceof RestError && error.statusCode === 404) {
        return failed(
          `The source blob '${uri}' does not exist in storage account '${this.storage.accountName}'.`,
        );
      }
      const reason = error instanceof Error ? error.message : String(error);
      return failed(`The source blob '${uri}' could not be read: ${reason}`);
    }
    if (length < vhdFooterSize) {
      return failed(
        `The blob '${uri}' of ${length} bytes is too small to be a VHD: it cannot hold the 512-byte footer.`,
      );
    }
    const footer = await blob.downloadToBuffer(length - vhdFooterSize, vhdFooterSize);
    const error = checkFixedVhdFooter(uri, footer, length);
    return error === undefined ? { virtualSize: length - vhdFooterSize } : { error };
  }
}

/** The checks Azure applies to a VHD source: a fixed VHD whose footer matches the blob and whose size is whole MiB. */
function checkFixedVhdFooter(uri: string, footer: Buffer, blobLength: number): ArmErrorBody | undefined {
  const failed = (message: string): ArmErrorBody => ({ code: 'InvalidParameter', message });
  const cookie = footer.subarray(0, 8).toString('latin1');
  if (cookie !== 'conectix') {
    return failed(
      `The specified cookie value in VHD footer indicates that blob '${uri}' is not a supported VHD. The VHD is expected to have cookie value 'conectix', found '${cookie.replace(/[^\x20-\x7e]/g, '?')}'.`,
    );
  }
  const stored = footer.readUInt32BE(64);
  let sum = 0;
  footer.forEach((byte, offset) => {
    if (offset < 64 || offset > 67) sum += byte;
  });
  if (~sum >>> 0 !== stored) {
    return failed(
      `The VHD footer of blob '${uri}' has checksum 0x${stored.toString(16)}, but its content sums to 0x${(~sum >>> 0).toString(16)}.`,
    );
  }
  const diskType = footer.readUInt32BE(60);
  if (diskType !== 2) {
    return failed(
      `The VHD '${uri}' is of type '${vhdDiskTypes[diskType] ?? `unknown (${diskType})`}'. Only fixed VHDs (disk type 2) are supported.`,
    );
  }
  const currentSize = Number(footer.readBigUInt64BE(48));
  if (currentSize + vhdFooterSize !== blobLength) {
    return failed(
      `The VHD '${uri}' is ${blobLength} bytes, but its footer declares a virtual size of ${currentSize} bytes; a fixed VHD is its virtual size plus the 512-byte footer.`,
    );
  }
  if (currentSize % mebibyte !== 0) {
    return failed(
      `The VHD '${uri}' has an unsupported virtual size of ${currentSize} bytes. The size must be a whole number (in MBs).`,
    );
  }
  return undefined;
}
