//! One owner across tabs. Every tab of a wallet shares one database; only the
//! tab holding the [`TabLock`] runs the funding flows, and the others follow
//! what it does through a [`TabBroadcast`].

use std::cell::RefCell;

use futures::channel::oneshot;
use futures::future::{self, Either};
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{BroadcastChannel, LockManager, LockMode, LockOptions, MessageEvent};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TabLockError {
    /// Asked not to wait, and another tab (or another holder here) has the lock.
    #[error("another tab holds the lock")]
    HeldElsewhere,
    /// No `navigator.locks` (an old browser, or a page not served over HTTPS).
    #[error("this browser has no Web Locks (navigator.locks)")]
    Unsupported,
    /// The browser turned the request down; the text says why.
    #[error("the browser refused: {0}")]
    Refused(String),
}

/// An exclusive Web Lock, held for as long as this value lives.
///
/// ```ignore
/// match TabLock::acquire("fiber-funding:owner", false).await {
///     Ok(lock) => run_the_node(lock).await, // this tab owns the flows
///     Err(TabLockError::HeldElsewhere) => follow_along(),
///     Err(error) => return Err(error),
/// }
/// ```
#[derive(Debug)]
pub struct TabLock {
    name: String,
    /// Resolves the promise the lock callback returned; the browser releases
    /// the lock once it settles.
    let_go: Option<Function>,
    /// The lock request's own promise: settles after the lock is released.
    released: Option<JsFuture>,
}

impl TabLock {
    /// Requests the exclusive lock `name`. With `wait`, resolves once it is
    /// granted, however long that takes; without, fails at once with
    /// [`TabLockError::HeldElsewhere`] when someone else holds it.
    pub async fn acquire(name: &str, wait: bool) -> Result<TabLock, TabLockError> {
        let locks = lock_manager().ok_or(TabLockError::Unsupported)?;

        let mut let_go = None;
        let held = Promise::new(&mut |resolve, _reject| let_go = Some(resolve));
        let let_go = let_go.expect("a promise runs its executor at once");

        let (granted_sender, granted) = oneshot::channel::<bool>();
        // JS owns the callback: it is called exactly once, when the lock is
        // granted or (with `ifAvailable`) refused.
        let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
            let is_granted = !lock.is_null();
            // Nobody is waiting any more (the acquire was dropped): let go at once.
            if granted_sender.send(is_granted).is_ok() && is_granted {
                held.into()
            } else {
                JsValue::UNDEFINED
            }
        });

        let options = LockOptions::new();
        options.set_mode(LockMode::Exclusive);
        options.set_if_available(!wait);
        let request = locks.request_with_options(name, &options, callback.unchecked_ref());
        let mut released = JsFuture::from(request);

        match future::select(granted, &mut released).await {
            Either::Left((Ok(true), _)) => Ok(TabLock {
                name: name.to_owned(),
                let_go: Some(let_go),
                released: Some(released),
            }),
            Either::Left((Ok(false), _)) => Err(TabLockError::HeldElsewhere),
            Either::Left((Err(oneshot::Canceled), _)) => {
                Err(TabLockError::Refused("the lock callback was dropped uncalled".into()))
            }
            Either::Right((Err(error), _)) => Err(TabLockError::Refused(describe(&error))),
            Either::Right((Ok(_), _)) => Err(TabLockError::Refused("the lock request ended ungranted".into())),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Releases the lock and returns once the browser has let it go, so a
    /// request made next can be granted.
    pub async fn release(mut self) {
        self.let_go();
        if let Some(released) = self.released.take() {
            let _ = released.await;
        }
    }

    fn let_go(&mut self) {
        if let Some(let_go) = self.let_go.take() {
            let _ = let_go.call0(&JsValue::UNDEFINED);
        }
    }
}

impl Drop for TabLock {
    fn drop(&mut self) {
        self.let_go();
    }
}

/// `navigator.locks` of this global scope, a window or a worker alike.
fn lock_manager() -> Option<LockManager> {
    let navigator = Reflect::get(&js_sys::global(), &JsValue::from_str("navigator")).ok()?;
    let locks = Reflect::get(&navigator, &JsValue::from_str("locks")).ok()?;
    if locks.is_undefined() || locks.is_null() {
        return None;
    }
    Some(locks.unchecked_into())
}

fn describe(error: &JsValue) -> String {
    let text = |name: &str| {
        Reflect::get(error, &JsValue::from_str(name))
            .ok()
            .and_then(|value| value.as_string())
    };
    match (text("name"), text("message")) {
        (Some(name), Some(message)) => format!("{name}: {message}"),
        _ => error.as_string().unwrap_or_else(|| format!("{error:?}")),
    }
}

/// The longest message a [`TabBroadcast`] takes, in UTF-16 units: a page's
/// largest argument (a signed tx) fits.
pub const MAX_MESSAGE_CHARS: u32 = super::node::MAX_ARGUMENT_CHARS;

/// A `BroadcastChannel` carrying JSON text between the tabs of one origin.
/// A message reaches every other instance of the same name, never the sender.
pub struct TabBroadcast {
    channel: BroadcastChannel,
    subscribers: RefCell<Vec<Subscriber>>,
}

type Subscriber = Closure<dyn FnMut(MessageEvent)>;

impl std::fmt::Debug for TabBroadcast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TabBroadcast")
            .field("name", &self.channel.name())
            .field("subscribers", &self.subscribers.borrow().len())
            .finish()
    }
}

impl TabBroadcast {
    pub fn new(name: &str) -> Result<TabBroadcast, TabLockError> {
        let channel = BroadcastChannel::new(name).map_err(|error| TabLockError::Refused(describe(&error)))?;
        Ok(TabBroadcast {
            channel,
            subscribers: RefCell::new(Vec::new()),
        })
    }

    pub fn post(&self, json: &str) -> Result<(), TabLockError> {
        self.channel
            .post_message(&JsValue::from_str(json))
            .map_err(|error| TabLockError::Refused(describe(&error)))
    }

    /// Calls `callback` with every text message another instance posts, until
    /// [`TabBroadcast::close`]. Anything that is not text, or is longer than
    /// [`MAX_MESSAGE_CHARS`], is ignored (measured before it is copied in).
    pub fn subscribe(&self, mut callback: impl FnMut(String) + 'static) {
        let listener = Subscriber::new(move |event: MessageEvent| {
            let data = event.data();
            if let Some(text) = data.dyn_ref::<js_sys::JsString>() {
                if text.length() <= MAX_MESSAGE_CHARS {
                    callback(String::from(text));
                }
            }
        });
        self.channel
            .add_event_listener_with_callback("message", listener.as_ref().unchecked_ref())
            .expect("a BroadcastChannel accepts listeners");
        self.subscribers.borrow_mut().push(listener);
    }

    /// Stops sending and receiving; the subscribers are dropped.
    pub fn close(&self) {
        self.channel.close();
        for listener in self.subscribers.borrow_mut().drain(..) {
            let _ = self
                .channel
                .remove_event_listener_with_callback("message", listener.as_ref().unchecked_ref());
        }
    }
}

impl Drop for TabBroadcast {
    fn drop(&mut self) {
        self.close();
    }
}
