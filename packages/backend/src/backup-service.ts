import { Replies, type Logger } from '@mailgrid/core';
import { proto, toServiceError, type BackupHandlers, type GrpcService } from '@mailgrid/protocol';
import type { LmdbMailStore } from '@mailgrid/store';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';

/** What `mailgrid-backup.json` in a backup says. */
export interface BackupManifest {
  node: string;
  group: string;
  at: string;
  /** Where the copy's log ends. */
  seq: number;
  epoch: number;
  /** The folders of the copy, as in a node's data folder. */
  parts: string[];
}

/**
 * Backup.Copy: a consistent copy of this backend's store, made while it serves, into a
 * folder on its host laid out like its data folder (restore: stop the node, put `store/`
 * (and a single node's `directory/`) in its data folder, start it).
 */
export function backupService(options: {
  store: LmdbMailStore;
  /** A single node's embedded directory, copied too. */
  directory?: { backup(dir: string, compact: boolean): Promise<void> };
  node: string;
  group: string;
  log: Logger;
}): GrpcService {
  const handlers: BackupHandlers = {
    Copy: (call, callback) => {
      const { path, compact } = call.request;
      const started = Date.now();
      (async () => {
        if (!isAbsolute(path)) throw Replies.backupRefused(`the folder must be an absolute path on ${options.node}'s host: ${path}`);
        if (existsSync(path) && readdirSync(path).length) throw Replies.backupRefused(`${path} on ${options.node} is not empty`);
        const position = await options.store.backup(join(path, 'store'), compact);
        const parts = ['store'];
        if (options.directory) {
          await options.directory.backup(join(path, 'directory'), compact);
          parts.push('directory');
        }
        const manifest: BackupManifest = { node: options.node, group: options.group, at: new Date().toISOString(), seq: position.seq, epoch: position.epoch, parts };
        writeFileSync(join(path, 'mailgrid-backup.json'), JSON.stringify(manifest, null, 2) + '\n');
        const bytes = parts.reduce((n, p) => n + statSync(join(path, p, 'data.mdb')).size, 0);
        options.log.info({ event: 'backup.done', path, seq: position.seq, epoch: position.epoch, bytes, ms: Date.now() - started }, 'backup made');
        return { node: options.node, group: options.group, path, seq: position.seq, epoch: position.epoch, bytes };
      })().then(
        (res) => callback(null, res),
        (err) => {
          options.log.warn({ event: 'backup.failed', path, err }, 'backup failed');
          callback(toServiceError(err));
        },
      );
    },
  };
  return { name: 'Backup', definition: proto.Backup.service, handlers: handlers as never };
}
