//! The channel from a model's scheduler to one request: unbounded, so the scheduler never
//! blocks the batch on one client and the end of a stream is never dropped, but counted, so
//! the scheduler can tell a reader that lags and pause its streams until it catches up.
//!
//! Without the count a client that reads a streamed completion slowly (or not at all, with
//! its connection open) would have the server generate its whole `max_tokens` ahead and
//! hold every event in memory, spending batch places on text nobody reads yet.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::scheduler::StreamEvent;

/// Events a request may have sent but not yet taken before the scheduler pauses its
/// streams. A step adds at most three per stream (a piece, the held-back rest, the end), so
/// a request never holds more than this plus three per choice.
pub const MAX_UNREAD_EVENTS: usize = 256;

/// Creates a request's channel.
pub fn event_channel() -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let unread = Arc::new(AtomicUsize::new(0));
    (
        EventSender {
            tx,
            unread: Arc::clone(&unread),
        },
        EventReceiver { rx, unread },
    )
}

/// The scheduler's end; one clone per stream of the request.
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: mpsc::UnboundedSender<StreamEvent>,
    unread: Arc<AtomicUsize>,
}

/// The receiver went away: the client disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverGone;

impl EventSender {
    /// Sends `event`; `Err` when the request is gone.
    pub fn send(&self, event: StreamEvent) -> Result<(), ReceiverGone> {
        self.unread.fetch_add(1, Ordering::Relaxed);
        self.tx.send(event).map_err(|_| {
            self.unread.fetch_sub(1, Ordering::Relaxed);
            ReceiverGone
        })
    }

    /// Whether the request is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Whether the request's reader is [`MAX_UNREAD_EVENTS`] or more behind.
    pub fn lagging(&self) -> bool {
        self.unread.load(Ordering::Relaxed) >= MAX_UNREAD_EVENTS
    }

    /// Events sent and not yet taken.
    pub fn unread(&self) -> usize {
        self.unread.load(Ordering::Relaxed)
    }
}

/// The request's end.
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::UnboundedReceiver<StreamEvent>,
    unread: Arc<AtomicUsize>,
}

impl EventReceiver {
    /// The next event; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<StreamEvent> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next event, as [`mpsc::UnboundedReceiver::poll_recv`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<StreamEvent>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(_)) = &polled {
            self.unread.fetch_sub(1, Ordering::Relaxed);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece() -> StreamEvent {
        StreamEvent::Piece {
            index: 0,
            text: "x".into(),
            detail: None,
        }
    }

    #[tokio::test]
    async fn the_count_follows_what_is_sent_and_taken() {
        let (tx, mut rx) = event_channel();
        for _ in 0..MAX_UNREAD_EVENTS - 1 {
            tx.send(piece()).unwrap();
        }
        assert!(!tx.lagging());
        tx.send(piece()).unwrap();
        assert!(tx.lagging());
        assert!(rx.recv().await.is_some());
        assert!(!tx.lagging());
        assert_eq!(tx.unread(), MAX_UNREAD_EVENTS - 1);
        drop(rx);
        assert_eq!(tx.send(piece()), Err(ReceiverGone));
        assert_eq!(tx.unread(), MAX_UNREAD_EVENTS - 1);
    }
}
