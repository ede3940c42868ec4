import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { runUntilSignal, StartError, stopAll, type Service, type ServiceState } from './service.js';

/** A service whose stop takes `takesMs` (or what it is given, if less), recording what it was given. */
function part(name: string, takesMs: number, given: Record<string, number>): Service {
  let state: ServiceState = 'running';
  return {
    name,
    get state() {
      return state;
    },
    async start() {},
    async stop(drainMs = 30_000) {
      given[name] = drainMs;
      await new Promise((r) => setTimeout(r, Math.min(takesMs, drainMs)));
      state = 'stopped';
    },
  };
}

describe('stopAll: one drain deadline for the whole node', () => {
  it('each service gets what is left of drainMs, not drainMs again', async () => {
    const given: Record<string, number> = {};
    // Stopped in reverse: smtp first (it uses 300 ms), then pop3 (takes all it gets), then the store.
    await stopAll([part('store', 0, given), part('pop3', 10_000, given), part('smtp', 300, given)], pino({ level: 'silent' }), 600);
    assert.equal(given.smtp, 600);
    assert.ok(given.pop3 <= 300, `pop3 had what smtp left: ${given.pop3}`);
    assert.ok(given.store <= 10, `the store, after the deadline, closes at once: ${given.store}`);
  });
});

describe('runUntilSignal: a start that fails part way', () => {
  it('stops what had started, in reverse, and says which part failed', async () => {
    const events: string[] = [];
    const service = (name: string, fails = false): Service => {
      let state: ServiceState = 'new';
      return {
        name,
        get state() {
          return state;
        },
        async start() {
          if (fails) throw Object.assign(new Error('listen EADDRINUSE: address already in use 127.0.0.1:2110'), { code: 'EADDRINUSE' });
          events.push(`start ${name}`);
          state = 'running';
        },
        async stop() {
          events.push(`stop ${name}`);
          state = 'stopped';
        },
      };
    };
    const never = service('never');
    await assert.rejects(runUntilSignal([service('health'), service('store'), service('access', true), never], pino({ level: 'silent' }), 1_000), (err: unknown) => {
      assert.ok(err instanceof StartError);
      assert.match((err as Error).message, /^access could not start: 127\.0\.0\.1:2110 is already in use/);
      return true;
    });
    assert.deepEqual(events, ['start health', 'start store', 'stop store', 'stop health']);
    assert.equal(never.state, 'new');
  });
});
