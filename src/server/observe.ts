import type diagnostics_channel from 'node:diagnostics_channel';

/**
 * Subscribes `on` to the events of `channel` that name `source` (the Upstream, TrustService… of
 * one gate), so two gates in one process each observe only their own; returns the unsubscribe.
 */
export function subscribeFrom<E extends { source: object }>(
  channel: diagnostics_channel.Channel,
  source: object,
  on: (event: E) => void,
): () => void {
  const listener = (message: unknown): void => {
    if ((message as E).source === source) on(message as E);
  };
  channel.subscribe(listener);
  return () => void channel.unsubscribe(listener);
}
