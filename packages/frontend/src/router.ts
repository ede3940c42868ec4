import type { HostingGroups } from '@mailgrid/directory';

export interface Routed<R> {
  group: string;
  /** gRPC address of the group's primary, or undefined when no primary is known. */
  address: string | undefined;
  recipients: R[];
}

/** Splits a message's recipients by hosting group and finds where each group is served. */
export class Router {
  constructor(private readonly groups: HostingGroups) {}

  async route<R extends { group: string }>(recipients: R[]): Promise<Routed<R>[]> {
    const byGroup = new Map<string, R[]>();
    for (const r of recipients) {
      const list = byGroup.get(r.group);
      if (list) list.push(r);
      else byGroup.set(r.group, [r]);
    }
    return Promise.all(
      [...byGroup].map(async ([group, list]) => ({ group, address: await this.groups.primary(group), recipients: list })),
    );
  }
}
