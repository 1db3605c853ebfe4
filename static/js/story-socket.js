// The story's websocket (docs/protocol.md): connects, reconnects with backoff, sends the
// editor's requests and hands it the server's messages. It follows one generation at a time:
// its tokens in order, once each; `resume` after a reconnection; and its Stop, sent as soon
// as the generation has an id (a Stop pressed before the server's `queued` is sent when that
// arrives) and again on each new connection, since a lost one may not have carried it.

const FIRST_RECONNECT_MS = 500;
const LONGEST_RECONNECT_MS = 10000;

// `on` holds the editor's handlers: open(), close(), queued(message), reading(message) (how
// far the model has read the story, until its first token, and never once Stop is pressed),
// token(message), done(message), refused(message) (an error before the generation had an
// id: it never started), error(message) (any other), inspection(message) (the Inspect
// panel's answers) and context(message) (the context bar's answers and their errors). Message types this page does not know are ignored, as the protocol asks.
export function createStorySocket(storyId, on) {
  let socket = null;
  let reconnectDelay = FIRST_RECONNECT_MS;
  let requestCounter = 0;
  // The generation followed, from the moment it is asked for until the editor ends it:
  // {requestId, id, lastSeq, stopping, cancelSentOn}.
  let generation = null;

  const connected = () => socket && socket.readyState === WebSocket.OPEN;
  const send = (message) => socket.send(JSON.stringify(message));

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/stories/${storyId}/`);
    socket.addEventListener("open", () => {
      reconnectDelay = FIRST_RECONNECT_MS;
      if (generation && generation.id) {
        send({ type: "resume", generation_id: generation.id, after_seq: generation.lastSeq });
        if (generation.stopping) sendCancel();
      }
      on.open();
    });
    socket.addEventListener("message", (event) => dispatch(JSON.parse(event.data)));
    socket.addEventListener("close", () => {
      on.close();
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, LONGEST_RECONNECT_MS);
    });
  }

  // Sent once a connection takes it; a reconnection sends it again.
  function sendCancel() {
    if (connected() && generation.cancelSentOn !== socket) {
      send({ type: "cancel", generation_id: generation.id });
      generation.cancelSentOn = socket;
    }
  }

  function dispatch(message) {
    if (String(message.request_id || "").startsWith("inspect-") || message.type === "inspection") {
      on.inspection(message);
      return;
    }
    if (String(message.request_id || "").startsWith("context-") || message.type === "context") {
      on.context(message);
      return;
    }
    switch (message.type) {
      case "queued":
        if (generation && message.request_id === generation.requestId) {
          generation.id = message.generation_id;
          if (generation.stopping) sendCancel();
          else on.queued(message);
        }
        break;
      case "reading":
        if (generation && message.generation_id === generation.id && generation.lastSeq < 0 && !generation.stopping) {
          on.reading(message);
        }
        break;
      case "token":
        if (generation && message.generation_id === generation.id && message.seq === generation.lastSeq + 1) {
          generation.lastSeq = message.seq;
          on.token(message);
        }
        break;
      case "done":
        if (generation && message.generation_id === generation.id) on.done(message);
        break;
      case "error":
        if (generation && !generation.id) on.refused(message);
        else on.error(message);
        break;
    }
  }

  return {
    connect,
    connected,
    // Follows a new generation, before it is asked for (the story is saved first).
    begin() {
      generation = { requestId: `r${++requestCounter}`, id: null, lastSeq: -1 };
    },
    // Asks for the generation begun: a continuation of `text`, or a selection tool's answer.
    generate(text, params, tool = null) {
      send({ type: "generate", request_id: generation.requestId, text, params, ...(tool ? { tool } : {}) });
    },
    // Follows a generation already running (an earlier visit's), from its first token: the
    // next connection resumes it.
    follow(generationId) {
      generation = { requestId: null, id: generationId, lastSeq: -1 };
    },
    stop() {
      generation.stopping = true;
      if (generation.id) sendCancel();
    },
    stopping: () => Boolean(generation && generation.stopping),
    // The generation is over for the editor: finished, refused, or stopped before it was asked.
    end() {
      generation = null;
    },
    // Sends the Inspect panel's question; returns whether it could.
    inspect: (message) => connected() && (send(message), true),
    // Asks how the model's window would be spent on this text (the context bar); returns
    // the request's id, or null when not connected.
    context(text, maxNewTokens) {
      if (!connected()) return null;
      const requestId = `context-${++requestCounter}`;
      send({ type: "context", request_id: requestId, text, max_new_tokens: maxNewTokens });
      return requestId;
    },
  };
}
