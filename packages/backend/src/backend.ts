import * as grpc from '@grpc/grpc-js';
import type { Config, Logger, Service, ServiceState } from '@mailgrid/core';
import type { Directory, DirectoryAdmin } from '@mailgrid/directory';
import { proto } from '@mailgrid/protocol';
import type { MailStore } from '@mailgrid/store';
import { adminHandlers } from './admin-service.js';
import { deliveryHandlers } from './delivery-service.js';
import { mailboxHandlers } from './mailbox-service.js';

export interface BackendOptions {
  config: Config;
  log: Logger;
  directory: Directory;
  store: MailStore;
  /** Served as the Admin service when this node owns its directory (single node). */
  directoryAdmin?: DirectoryAdmin;
}

/** The backend role: owns accounts of one hosting group and serves them over gRPC. */
export class Backend implements Service {
  readonly name = 'backend';
  private _state: ServiceState = 'new';
  private readonly server: grpc.Server;
  private readonly log: Logger;
  private boundPort = 0;

  constructor(private readonly options: BackendOptions) {
    const { config, directory, store } = options;
    this.log = options.log.child({ component: 'backend', group: config.backend.group });
    this.server = new grpc.Server({ 'grpc.max_receive_message_length': 8 * 1024 * 1024 });
    this.server.addService(
      proto.Delivery.service,
      deliveryHandlers({
        group: config.backend.group,
        directory,
        store,
        maxMessageBytes: config.smtp.maxMessageBytes,
        log: options.log.child({ component: 'delivery', group: config.backend.group }),
      }),
    );
    this.server.addService(proto.Mailbox.service, mailboxHandlers({ group: config.backend.group, directory, store, chunkBytes: config.delivery.chunkBytes, log: this.log }));
    if (options.directoryAdmin) this.server.addService(proto.Admin.service, adminHandlers(options.directoryAdmin, config.backend.group));
  }

  get state(): ServiceState {
    return this._state;
  }

  /** `host:port` the gRPC services listen on (the real port when configured as 0). */
  get address(): string {
    return `${this.options.config.grpc.host}:${this.boundPort}`;
  }

  async start(): Promise<void> {
    this._state = 'starting';
    const { host, port } = this.options.config.grpc;
    this.boundPort = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this._state = 'running';
    this.log.info({ event: 'backend.listening', address: this.address }, 'gRPC listening');
  }

  async stop(drainMs = 30_000): Promise<void> {
    if (this._state === 'stopped' || this._state === 'new') return;
    this._state = 'stopping';
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.log.warn({ event: 'backend.drain-timeout' }, 'calls still running, forcing shutdown');
        this.server.forceShutdown();
        resolve();
      }, drainMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    this._state = 'stopped';
    this.log.info({ event: 'backend.stopped' }, 'stopped');
  }
}
