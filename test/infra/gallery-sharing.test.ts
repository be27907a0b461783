import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ManagedIdentityCredential } from '@azure/identity';
import { StorageSharedKeyCredential } from '@azure/storage-blob';
import {
  computeClient,
  gallerySharingSettings,
  shareGallery,
  sharingUpdates,
  type GallerySharingSettings,
} from '../../infra/scripts/gallery-sharing.js';
import { OWNER } from '../support/fake-arm/authorization.js';
import type { GallerySharingOptions } from '../support/fake-arm/gallery-sharing.js';
import { startFakeArm, type FakeArm } from '../support/fake-arm/index.js';
import { decodeJwt, startIdentityEndpoint, type IdentityEndpoint } from '../support/identity.js';

const SUB_A = '11111111-2222-4333-8444-555555555555';
const SUB_B = '22222222-3333-4444-8555-666666666666';
const TENANT = '33333333-4444-4555-8666-777777777777';
const COMMUNITY = {
  BASM_GALLERY_SHARING: 'community',
  BASM_GALLERY_COMMUNITY_PUBLISHER_URI: 'https://example.org/stemcells',
  BASM_GALLERY_COMMUNITY_PUBLISHER_CONTACT: 'stemcells@example.org',
  BASM_GALLERY_COMMUNITY_EULA: 'https://example.org/eula',
  BASM_GALLERY_COMMUNITY_PUBLIC_NAME_PREFIX: 'boshstemcells',
};
const groups = (subscriptions: string[], tenants: string[] = []): GallerySharingSettings => ({
  mode: 'groups',
  subscriptions,
  tenants,
});

describe('gallery sharing settings', () => {
  test('off unless asked', () => {
    assert.deepEqual(gallerySharingSettings({}), { mode: 'none', subscriptions: [], tenants: [] });
    assert.deepEqual(
      gallerySharingSettings({
        BASM_GALLERY_SHARING: ' Groups ',
        BASM_GALLERY_SHARE_SUBSCRIPTIONS: ` ${SUB_A}, ${SUB_B},`,
        BASM_GALLERY_SHARE_TENANTS: TENANT,
      }),
      { mode: 'groups', subscriptions: [SUB_A, SUB_B], tenants: [TENANT] },
    );
    assert.equal(gallerySharingSettings(COMMUNITY).mode, 'community');
  });

  test('fault: bad sharing settings fail with one message naming every offending variable', () => {
    const cases: Array<[string, Record<string, string>, RegExp[]]> = [
      [
        'unknown mode',
        { BASM_GALLERY_SHARING: 'public' },
        [/BASM_GALLERY_SHARING is "public"; expected none, groups or community/],
      ],
      ['groups without ids', { BASM_GALLERY_SHARING: 'groups' }, [/expected at least one id/]],
      [
        'ids that are not GUIDs, and ids without groups',
        { BASM_GALLERY_SHARE_SUBSCRIPTIONS: 'my-sub', BASM_GALLERY_SHARE_TENANTS: TENANT },
        [
          /BASM_GALLERY_SHARE_SUBSCRIPTIONS has my-sub; expected comma-separated GUIDs/,
          /BASM_GALLERY_SHARE_SUBSCRIPTIONS is set but BASM_GALLERY_SHARING is none/,
          /BASM_GALLERY_SHARE_TENANTS is set but BASM_GALLERY_SHARING is none/,
        ],
      ],
      [
        'community without its publisher fields',
        { BASM_GALLERY_SHARING: 'community', BASM_GALLERY_COMMUNITY_PUBLISHER_URI: 'http://example.org' },
        [
          /BASM_GALLERY_COMMUNITY_PUBLISHER_CONTACT, BASM_GALLERY_COMMUNITY_EULA, BASM_GALLERY_COMMUNITY_PUBLIC_NAME_PREFIX empty/,
          /BASM_GALLERY_COMMUNITY_PUBLISHER_URI is "http:\/\/example.org"; expected an https:\/\/ URL/,
        ],
      ],
      [
        'community with a contact that is no e-mail address',
        { ...COMMUNITY, BASM_GALLERY_COMMUNITY_PUBLISHER_CONTACT: 'the team' },
        [/BASM_GALLERY_COMMUNITY_PUBLISHER_CONTACT is "the team"; expected an e-mail address/],
      ],
    ];
    for (const [why, env, expected] of cases) {
      assert.throws(
        () => gallerySharingSettings(env),
        (error: unknown) => {
          assert.ok(error instanceof Error, why);
          for (const pattern of expected) assert.match(error.message, pattern, why);
          return true;
        },
        why,
      );
    }
  });
});

describe('share calls', () => {
  test('groups: the missing ids are added and the ids no longer listed removed; nothing when in step', () => {
    assert.deepEqual(sharingUpdates(groups([SUB_A], [TENANT]), { permissions: 'Groups' }), [
      {
        operationType: 'Add',
        groups: [
          { type: 'Subscriptions', ids: [SUB_A] },
          { type: 'AADTenants', ids: [TENANT] },
        ],
      },
    ]);
    const current = {
      permissions: 'Groups',
      groups: [{ type: 'Subscriptions', ids: [SUB_A.toUpperCase(), SUB_B] }],
    };
    assert.deepEqual(sharingUpdates(groups([SUB_A]), current), [
      { operationType: 'Remove', groups: [{ type: 'Subscriptions', ids: [SUB_B] }] },
    ]);
    assert.deepEqual(sharingUpdates(groups([SUB_A, SUB_B]), current), []);
  });

  test('community: enabled once; none: no call at all', () => {
    const community: GallerySharingSettings = { mode: 'community', subscriptions: [], tenants: [] };
    assert.deepEqual(sharingUpdates(community, { permissions: 'Community' }), [
      { operationType: 'EnableCommunity' },
    ]);
    assert.deepEqual(
      sharingUpdates(community, { permissions: 'Community', communityGalleryEnabled: true }),
      [],
    );
    const none: GallerySharingSettings = { mode: 'none', subscriptions: [], tenants: [] };
    assert.deepEqual(
      sharingUpdates(none, { permissions: 'Groups', groups: [{ type: 'Subscriptions', ids: [SUB_A] }] }),
      [],
    );
  });
});

describe('the postprovision hook against ARM', () => {
  const subscriptionId = '00000000-1111-2222-3333-444444444444';
  const resourceGroup = 'rg-stemcells';
  const galleryName = 'gal_stemcells';
  const target = { resourceGroup, galleryName };
  let identity: IdentityEndpoint;
  const arms: FakeArm[] = [];

  before(async () => {
    identity = await startIdentityEndpoint();
    Object.assign(process.env, identity.env());
  });
  after(async () => {
    await Promise.all(arms.map((arm) => arm.stop()));
    await identity?.stop();
  });

  /** The gallery as the Bicep deployed it, and whoever ran azd holding Owner on the resource group. */
  async function deployed(gallerySharing: GallerySharingOptions) {
    const arm = await startFakeArm({
      subscriptionId,
      resourceGroup,
      galleryName,
      location: 'westeurope',
      // The share action never reads a VHD.
      storage: {
        blobEndpoint: 'https://127.0.0.1:9/unused',
        accountName: 'unused',
        sharedKeyCredential: new StorageSharedKeyCredential('unused', randomBytes(32).toString('base64')),
      },
      tenantId: identity.tenantId,
      appPrincipalId: identity.principalId,
      gallerySharing,
    });
    arms.push(arm);
    const deployer = new ManagedIdentityCredential({ clientId: 'whoever-ran-azd' });
    const token = await deployer.getToken(`${arm.url}/.default`);
    arm.roleAssignments.push({
      principalId: String(decodeJwt(token.token)['oid']),
      role: OWNER,
      scope: `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}`,
    });
    return {
      arm,
      asDeployer: computeClient(deployer, subscriptionId, arm.url),
      asApp: computeClient(new ManagedIdentityCredential(), subscriptionId, arm.url),
    };
  }

  test('groups: whoever ran azd shares the gallery with the listed subscriptions and tenants, and a second run sends nothing', async () => {
    const { arm, asDeployer } = await deployed({ permissions: 'Groups' });
    const first = await shareGallery(asDeployer, target, groups([SUB_A, SUB_B], [TENANT]));
    assert.equal(first.updates.length, 1);
    assert.deepEqual(arm.sharing.groups.get('Subscriptions'), [SUB_A, SUB_B]);
    assert.deepEqual(arm.sharing.groups.get('AADTenants'), [TENANT]);

    const before = arm.requests.length;
    assert.deepEqual((await shareGallery(asDeployer, target, groups([SUB_A, SUB_B], [TENANT]))).updates, []);
    assert.deepEqual(
      arm.requests.slice(before).map((r) => r.method),
      ['GET'],
    );

    await shareGallery(asDeployer, target, groups([SUB_B]));
    assert.deepEqual(arm.sharing.groups.get('Subscriptions'), [SUB_B]);
    assert.deepEqual(arm.sharing.groups.get('AADTenants'), []);
  });

  test('fault: the app identity cannot share the gallery: 403, nothing shared', async () => {
    const { arm, asApp } = await deployed({ permissions: 'Groups' });
    await assert.rejects(shareGallery(asApp, target, groups([SUB_A])), (error: unknown) => {
      assert.equal((error as { statusCode?: number }).statusCode, 403);
      assert.match(String((error as Error).message), /galleries\/share\/action/);
      return true;
    });
    assert.deepEqual(arm.sharing.groups.get('Subscriptions'), []);
  });

  test('community: the gallery the Bicep made Community is enabled as a community gallery', async () => {
    const { arm, asDeployer } = await deployed({
      permissions: 'Community',
      communityGalleryInfo: {
        publisherUri: COMMUNITY.BASM_GALLERY_COMMUNITY_PUBLISHER_URI,
        publisherContact: COMMUNITY.BASM_GALLERY_COMMUNITY_PUBLISHER_CONTACT,
        eula: COMMUNITY.BASM_GALLERY_COMMUNITY_EULA,
        publicNamePrefix: COMMUNITY.BASM_GALLERY_COMMUNITY_PUBLIC_NAME_PREFIX,
      },
    });
    const settings = gallerySharingSettings(COMMUNITY);
    assert.deepEqual((await shareGallery(asDeployer, target, settings)).updates, [
      { operationType: 'EnableCommunity' },
    ]);
    assert.equal(arm.sharing.communityGalleryEnabled, true);
    assert.deepEqual((await shareGallery(asDeployer, target, settings)).updates, []);
  });

  test('fault: sharing with groups while the gallery is not deployed for groups is refused by ARM', async () => {
    const { asDeployer } = await deployed({ permissions: 'Private' });
    await assert.rejects(
      shareGallery(asDeployer, target, groups([SUB_A])),
      /permissions is Groups; it is Private/,
    );
  });

  test('none: nothing is sent, and a gallery still shared is reported with the command that stops it', async () => {
    const { arm, asDeployer } = await deployed({ permissions: 'Groups' });
    arm.sharing.groups.get('Subscriptions')?.push(SUB_A);
    const before = arm.requests.length;
    const { updates, warning } = await shareGallery(asDeployer, target, gallerySharingSettings({}));
    assert.deepEqual(updates, []);
    assert.match(
      warning ?? '',
      /still shared \(Groups\).*az sig share reset --resource-group rg-stemcells --gallery-name gal_stemcells/,
    );
    assert.deepEqual(
      arm.requests.slice(before).map((r) => r.method),
      ['GET'],
    );
  });
});

test('azd checks the settings before provisioning and shares after publishing the app, from the azd environment', () => {
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const scripts = (
    JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { scripts: Record<string, string> }
  ).scripts;
  assert.match(
    scripts['azd:postprovision'] ?? '',
    /node dist\/infra\/scripts\/publish-function-package\.js && node dist\/infra\/scripts\/gallery-sharing\.js$/,
  );
  assert.match(
    scripts['azd:preprovision'] ?? '',
    /node dist\/infra\/scripts\/gallery-sharing\.js --check && node dist\/infra\/scripts\/key-vault-create-mode\.js$/,
    'bad settings stop azd before anything is deployed',
  );
  const parameters = readFileSync(`${root}infra/main.parameters.json`, 'utf8');
  assert.match(parameters, /"gallerySharing": \{ "value": "\$\{BASM_GALLERY_SHARING=none\}" \}/);
  const gallery = readFileSync(`${root}infra/modules/resources.bicep`, 'utf8');
  assert.match(gallery, /permissions: gallerySharing == 'groups' \? 'Groups' : 'Community'/);
});
