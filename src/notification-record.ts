/**
 * Notification record: the mirror's own note that a version's run finished (its GitHub dispatch was sent, or
 * notifications were off), kept as a small blob `notified/<definition>/<version>` in the VHD container. The
 * version's `mirror_notified` tag is the usual record; this one is written when Azure refuses that tag (too
 * many tags, a director's version at a tag limit), so the next run never takes the version for unfinished and
 * dispatches again.
 */

import type { BlockBlobClient, ContainerClient } from '@azure/storage-blob';

/** Blob names of notification records start with this; no VHD blob does (those end in `/root.vhd`). */
export const NOTIFICATION_RECORD_PREFIX = 'notified/';

// Metadata values must be printable ASCII.
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 1024);
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

export class NotificationRecords {
  readonly #container: ContainerClient;

  constructor(container: ContainerClient) {
    this.#container = container;
  }

  /** Records that the version's run finished: `notifiedAt` as the tag would hold it, and why the tag was not written. */
  async record(
    definitionName: string,
    versionName: string,
    notifiedAt: string,
    reason: string,
  ): Promise<void> {
    const blob = this.#blob(definitionName, versionName);
    const metadata = { mirror_notified: printable(notifiedAt), reason: printable(reason) };
    try {
      await blob.upload('', 0, { metadata });
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
      await this.#container.createIfNotExists();
      await blob.upload('', 0, { metadata });
    }
  }

  /** The recorded `mirror_notified` value of the version, if its run finished without the tag. */
  async find(definitionName: string, versionName: string): Promise<string | undefined> {
    try {
      const properties = await this.#blob(definitionName, versionName).getProperties();
      return properties.metadata?.['mirror_notified'] ?? 'recorded';
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw error;
    }
  }

  /** Drops the record of a version of that name: a new version is created under it. */
  async forget(definitionName: string, versionName: string): Promise<void> {
    await this.#blob(definitionName, versionName)
      .deleteIfExists()
      .catch((error: unknown) => {
        // No container yet: nothing recorded either.
        if (statusOf(error) !== 404) throw error;
      });
  }

  #blob(definitionName: string, versionName: string): BlockBlobClient {
    // Azure compares definition names without case; the record must be found whatever the spelling.
    return this.#container.getBlockBlobClient(
      `${NOTIFICATION_RECORD_PREFIX}${definitionName.toLowerCase()}/${versionName}`,
    );
  }
}
