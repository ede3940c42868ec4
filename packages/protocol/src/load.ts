import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ProtoGrpcType as AdminProto } from './generated/admin.js';
import type { ProtoGrpcType as DeliveryProto } from './generated/delivery.js';
import type { ProtoGrpcType as MailboxProto } from './generated/mailbox.js';
import type { ProtoGrpcType as QueueProto } from './generated/queue.js';
import type { ProtoGrpcType as RulesProto } from './generated/rules.js';
import type { ProtoGrpcType as ReplicationProto } from './generated/replication.js';
import type { ProtoGrpcType as MoveProto } from './generated/move.js';
import type { ProtoGrpcType as SubmitProto } from './generated/submit.js';
import type { ProtoGrpcType as BackupProto } from './generated/backup.js';

const protoRoot = fileURLToPath(new URL('../../../proto', import.meta.url));

/**
 * The options the type generator used too (scripts/gen-types.mjs reads the same file);
 * the file names the conversion types ("String", "Number"), the loader wants them.
 */
const TYPES: Record<string, unknown> = { String, Number };
export const loaderOptions: protoLoader.Options = {
  ...Object.fromEntries(
    Object.entries(JSON.parse(readFileSync(new URL('../loader-options.json', import.meta.url), 'utf8'))).map(([k, v]) => [
      k,
      typeof v === 'string' ? TYPES[v] : v,
    ]),
  ),
  includeDirs: [protoRoot],
};

type Proto = DeliveryProto & MailboxProto & AdminProto & QueueProto & SubmitProto & RulesProto & ReplicationProto & MoveProto & BackupProto;

const definition = protoLoader.loadSync(
  ['mailgrid/v1/delivery.proto', 'mailgrid/v1/mailbox.proto', 'mailgrid/v1/admin.proto', 'mailgrid/v1/queue.proto', 'mailgrid/v1/submit.proto', 'mailgrid/v1/rules.proto', 'mailgrid/v1/replication.proto', 'mailgrid/v1/move.proto', 'mailgrid/v1/backup.proto'],
  loaderOptions,
);

/** Loaded once per process. */
export const proto = (grpc.loadPackageDefinition(definition) as unknown as Proto).mailgrid.v1;
