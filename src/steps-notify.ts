/** The steps that end a version's run and a series' run: the announcement, and the run's record. */

import { setTimeout as sleep } from 'node:timers/promises';
import { MAX_TAG_VALUE, MIRROR_NOTIFIED_TAG, stemcellReferencesWith } from './cpi.js';
import { isFromAnotherTool, UNTAGGED_FROM_ANOTHER_TOOL } from './existing-version.js';
import { errorMessage, isTransientError } from './failures.js';
import { notifyStemcellPublished } from './notify.js';
import { NOTIFICATION_RECORD_PREFIX } from './notification-record.js';
import { requireConfiguredSeries, requireConfiguredStemcell, requireSeriesDefinition } from './provenance.js';
import { runLogLine, runRecordOf, writeRunRecord } from './run-record.js';
import type { MirrorServices } from './services.js';
import { REFERENCES_FULL } from './steps-gallery.js';
import { galleryVersionName } from './versions.js';
import type { StepInputs, StepOutputs } from './workflow-contract.js';

/** Retries a small write a few times in place: re-running the whole step would dispatch again. */
async function withPatience<T>(attempts: number, work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (attempt >= attempts || !isTransientError(error)) throw error;
      await sleep(2 ** attempt * 1000);
    }
  }
}

/** Step 2.6: the GitHub dispatch (when configured), recorded on the version so it is sent once. */
export async function notify(
  { config, gallery, notificationRecords, log }: MirrorServices,
  { series, version: stemcellVersion, definitionName: named }: StepInputs['notify'],
): Promise<StepOutputs['notify']> {
  requireConfiguredStemcell(config, series, stemcellVersion);
  const definitionName = requireSeriesDefinition(config, series, named);
  const galleryVersion = galleryVersionName(stemcellVersion);
  const where = `image version ${definitionName}/${galleryVersion}`;
  const prefix = `${series} ${stemcellVersion}: `;
  const version = await gallery.getImageVersion(definitionName, galleryVersion);
  if (!version) throw new Error(`${where} disappeared before its run finished`);
  if (isFromAnotherTool(version.tags)) throw new Error(`${where} ${UNTAGGED_FROM_ANOTHER_TOOL}`);
  // Announced already (a step run again, a run that had to record it in the mirror's storage): never twice.
  const announced =
    version.tags[MIRROR_NOTIFIED_TAG] ?? (await notificationRecords.find(definitionName, galleryVersion));
  if (announced !== undefined) {
    log.info(
      `${prefix}${where}: already announced (${MIRROR_NOTIFIED_TAG} ${announced}); not dispatching again`,
    );
    return { notified: false };
  }
  let dispatched: string | undefined;
  if (config.notify) {
    await notifyStemcellPublished(config.notify, {
      galleryName: config.galleryName,
      imageName: definitionName,
      imageVersion: galleryVersion,
      subscriptionId: config.subscriptionId,
      resourceGroup: config.resourceGroup,
    });
    dispatched = new Date().toISOString();
    log.info(
      `${prefix}dispatched ${config.notify.owner}/${config.notify.repo} ${config.notify.workflow} for ${definitionName}/${galleryVersion}`,
    );
  }
  // Recorded on the version (with the mirror's reference, for a version a director created), so a
  // run that stops before this point is finished by the next one.
  const wanted = stemcellReferencesWith(version.tags);
  const references = wanted !== undefined && wanted.length <= MAX_TAG_VALUE ? wanted : undefined;
  if (wanted !== undefined && references === undefined) log.warn(`${where}: ${REFERENCES_FULL}`);
  const notified = dispatched ?? 'off';
  const record = {
    [MIRROR_NOTIFIED_TAG]: notified,
    ...(references !== undefined ? { stemcell_references: references } : {}),
  };
  try {
    await withPatience(3, () => gallery.tagImageVersion(definitionName, galleryVersion, record));
  } catch (error) {
    // Nothing sent yet and Azure only busy: the step's retry writes the tag later.
    if (dispatched === undefined && isTransientError(error)) throw error;
    // Azure refuses the tag (50 tags already, a limit) or stays unavailable: the mirror's own record, so the
    // next run takes the version as finished. Failing the step instead would make its retry dispatch again.
    try {
      await notificationRecords.record(definitionName, galleryVersion, notified, errorMessage(error));
      log.warn(
        `${prefix}${where}: Azure did not take the ${MIRROR_NOTIFIED_TAG} tag (${errorMessage(error)}); ` +
          `recorded in the mirror's storage instead (${NOTIFICATION_RECORD_PREFIX}${definitionName}/${galleryVersion})`,
      );
    } catch (recordError) {
      if (dispatched === undefined) throw error;
      log.warn(
        `${prefix}${where}: dispatched, but recording it failed on the version (${errorMessage(error)}) and in the ` +
          `mirror's storage (${errorMessage(recordError)}); the next run may dispatch again`,
      );
    }
  }
  return { notified: dispatched !== undefined };
}

/** Last: the run's record for `status`, and its log line for the alerts in infra/ (see runLogLine). */
export async function recordRun(
  { config, vhdContainer, log }: MirrorServices,
  { series, runner, startedAt, results }: StepInputs['recordRun'],
): Promise<StepOutputs['recordRun']> {
  // An orchestration can be started by hand with any input: only a configured series' record is written.
  requireConfiguredSeries(config, series);
  const record = runRecordOf(series, runner, startedAt, new Date().toISOString(), results);
  const line = runLogLine(record);
  if (record.outcome === 'failed') log.warn(line);
  else log.info(line);
  await writeRunRecord(vhdContainer, record);
  return { outcome: record.outcome };
}
