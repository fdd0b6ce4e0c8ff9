// Reading a Server-Sent Events body as the WHATWG rules read it: `field: value` lines, an empty line ends an event,
// `data` lines join with newlines, a line starting with `:` is a comment (the server's heartbeat).

export interface StreamEvent {
  /** The event's id, when it has one. */
  id?: string;
  event: string;
  data: string;
}

/** The events of an event-stream body, as they arrive; `onBytes` hears of every chunk, comments included. */
export async function* readEventStream(
  body: AsyncIterable<Uint8Array>,
  onBytes: () => void = () => {},
): AsyncGenerator<StreamEvent> {
  const decoder = new TextDecoder();
  let buffered = '';
  let event: { id?: string; event?: string; data: string[] } = { data: [] };
  for await (const chunk of body) {
    onBytes();
    buffered += decoder.decode(chunk, { stream: true });
    for (let newline = buffered.indexOf('\n'); newline >= 0; newline = buffered.indexOf('\n')) {
      const line = buffered.slice(0, newline).replace(/\r$/, '');
      buffered = buffered.slice(newline + 1);
      if (line === '') {
        if (event.data.length > 0) yield { id: event.id, event: event.event ?? 'message', data: event.data.join('\n') };
        event = { data: [] };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') event.data.push(value);
      else if (field === 'id') event.id = value;
      else if (field === 'event') event.event = value;
    }
  }
}
