/**
 * How large each stage of a stemcell may grow, from what stemcell.MF says: the builder writes the raw
 * image size into `cloud_properties.disk` (MiB) and converts that image to a fixed VHD, so root.vhd
 * is that many MiB plus the 512-byte footer. A hostile archive that inflates beyond it is stopped
 * after at most these many bytes, whatever it claims elsewhere.
 */

import type { StemcellManifest } from './manifest.js';
import { StemcellError } from './manifest.js';
import { MIB, VHD_FOOTER_SIZE } from './vhd.js';

/** stemcell.MF is small; a larger one is refused before it is read. */
export const MAX_MANIFEST_BYTES = MIB;

/** The stemcell tar before stemcell.MF is read: at most stemcell.MF, directory headers and read-ahead. */
export const BEFORE_MANIFEST_BYTES = MAX_MANIFEST_BYTES + 4 * MIB;

/** Tar headers, padding and end-of-archive blocks around root.vhd inside the image. */
const IMAGE_TAR_OVERHEAD = MIB;
/** packages.txt, dev_tools_file_list.txt and the SBOMs beside the image in the stemcell tar. */
const SIDE_FILES_BYTES = 128 * MIB;

export interface StemcellBounds {
  /** root.vhd: the disk plus the footer. */
  vhdBytes: number;
  /** The `image` entry: gzip adds at most 5 bytes per 16 KiB stored block plus its header. */
  imageBytes: number;
  /** The image tar once inflated: root.vhd plus tar overhead. */
  imageTarBytes: number;
  /** The stemcell tar once inflated, from stemcell.MF on: the image plus the side files. */
  tarballTarBytes: number;
  /** Where the numbers come from, for error messages. */
  reason: string;
}

/** Throws StemcellError when cloud_properties.disk gives no usable size. */
export function stemcellBounds(manifest: StemcellManifest): StemcellBounds {
  const disk = manifest.cloudProperties.disk;
  if (
    disk === undefined ||
    !Number.isSafeInteger(disk) ||
    disk <= 0 ||
    disk * MIB > Number.MAX_SAFE_INTEGER
  ) {
    throw new StemcellError(
      `stemcell.MF has cloud_properties.disk ${JSON.stringify(disk ?? null)}, expected a whole number of MiB: it is what bounds root.vhd`,
    );
  }
  const vhdBytes = disk * MIB + VHD_FOOTER_SIZE;
  const imageTarBytes = vhdBytes + IMAGE_TAR_OVERHEAD;
  const imageBytes = imageTarBytes + Math.ceil(imageTarBytes / 16384) * 5 + 1024;
  return {
    vhdBytes,
    imageBytes,
    imageTarBytes,
    tarballTarBytes: imageBytes + SIDE_FILES_BYTES,
    reason: `cloud_properties.disk is ${disk} MiB, so root.vhd is at most ${vhdBytes} bytes with its ${VHD_FOOTER_SIZE}-byte footer`,
  };
}
