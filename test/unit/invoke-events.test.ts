import { describe, expect, it } from 'vitest';
import {
  type AgentEvent,
  InvokeStreamError,
  invokeEvents,
  type ProgressEvent,
  readInvoke,
  startingEvent,
} from '../../src/protocol/events.js';

// The invoke stream's rule, which every hop holds a stream to: progress events, then exactly one result or error
// event, then the end.

const result: AgentEvent = { type: 'result', images: ['images/u/t_1.png'], info: '{}', parameters: {} };
const failure: AgentEvent = { type: 'error', kind: 'sd_error', message: 'boom', retryable: true };

async function* stream(events: AgentEvent[], thenThrow?: Error): AsyncGenerator<AgentEvent> {
  yield* events;
  if (thenThrow) throw thenThrow;
}

async function collect(events: AsyncIterable<AgentEvent>): Promise<AgentEvent[]> {
  const seen: AgentEvent[] = [];
  for await (const event of events) seen.push(event);
  return seen;
}

describe('invokeEvents', () => {
  it('passes on progress and the terminal event, and answers the terminal event at the end', async () => {
    const events = invokeEvents(stream([startingEvent(), result]));
    expect(await events.next()).toEqual({ done: false, value: startingEvent() });
    expect(await events.next()).toEqual({ done: false, value: result });
    expect(await events.next()).toEqual({ done: true, value: result });
  });

  it('throws when the stream ends without a result or error event', async () => {
    const seen: AgentEvent[] = [];
    const reading = (async () => {
      for await (const event of invokeEvents(stream([startingEvent()]))) seen.push(event);
    })();
    await expect(reading).rejects.toBeInstanceOf(InvokeStreamError);
    await expect(reading).rejects.toThrow(/ended without a result or error event/);
    expect(seen).toEqual([startingEvent()]);
  });

  it('throws when anything follows the terminal event', async () => {
    await expect(collect(invokeEvents(stream([result, startingEvent()])))).rejects.toThrow(
      /went on after its result event \(a progress event\)/,
    );
    await expect(collect(invokeEvents(stream([failure, result])))).rejects.toBeInstanceOf(InvokeStreamError);
  });

  it('passes on a failure of the stream before the terminal event, and ignores one after it', async () => {
    const reset = new Error('socket hang up');
    await expect(collect(invokeEvents(stream([startingEvent()], reset)))).rejects.toBe(reset);
    expect(await collect(invokeEvents(stream([startingEvent(), failure], reset)))).toEqual([startingEvent(), failure]);
  });
});

describe('readInvoke', () => {
  it('hands each progress event over and answers the terminal event', async () => {
    const progress: ProgressEvent[] = [];
    expect(await readInvoke(stream([startingEvent(), failure]), (e) => progress.push(e))).toEqual(failure);
    expect(progress).toEqual([startingEvent()]);
    await expect(readInvoke(stream([]), () => {})).rejects.toBeInstanceOf(InvokeStreamError);
  });
});
