//! One owner across tabs: Web Locks and BroadcastChannel in Chromium. Two
//! holders in one page contend for a lock exactly as two tabs do.

use std::cell::RefCell;
use std::rc::Rc;

use fiber_funding::wasm::tab_lock::{TabBroadcast, TabLock, TabLockError};
use futures::channel::oneshot;
use futures::future::{self, Either};
use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use wasm_bindgen_test::*;

// Plays a browser without Web Locks until the returned function is called.
#[wasm_bindgen(inline_js = r#"
export function hide_web_locks() {
  const locks = Object.getOwnPropertyDescriptor(Navigator.prototype, "locks");
  Object.defineProperty(Navigator.prototype, "locks", { get: () => undefined, configurable: true });
  return () => Object.defineProperty(Navigator.prototype, "locks", locks);
}
"#)]
extern "C" {
    fn hide_web_locks() -> js_sys::Function;
}

fn fresh_lock_name(test: &str) -> String {
    format!("{test}-{}", js_sys::Math::random().to_bits())
}

async fn sleep_ms(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        web_sys::window()
            .unwrap()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .unwrap();
    });
    JsFuture::from(promise).await.unwrap();
}

/// `future`'s output, or `None` if it takes longer than `ms`.
async fn within<T>(ms: i32, future: impl std::future::Future<Output = T>) -> Option<T> {
    match future::select(Box::pin(future), Box::pin(sleep_ms(ms))).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}

#[wasm_bindgen_test]
async fn a_held_lock_is_refused_without_waiting_until_released() {
    let name = fresh_lock_name("no-wait");
    let first = TabLock::acquire(&name, false).await.unwrap();
    assert_eq!(first.name(), name);
    assert_eq!(
        TabLock::acquire(&name, false).await.unwrap_err(),
        TabLockError::HeldElsewhere
    );

    first.release().await;
    let second = TabLock::acquire(&name, false).await.unwrap();
    // Other names are independent.
    let other = TabLock::acquire(&fresh_lock_name("other"), false).await.unwrap();
    second.release().await;
    other.release().await;
}

#[wasm_bindgen_test]
async fn dropping_a_lock_releases_it() {
    let name = fresh_lock_name("drop");
    let first = TabLock::acquire(&name, false).await.unwrap();
    drop(first);
    // Dropping cannot wait for the browser; a waiting request sees it go.
    let second = within(2_000, TabLock::acquire(&name, true)).await;
    assert!(matches!(second, Some(Ok(_))), "{second:?}");
}

#[wasm_bindgen_test]
async fn a_waiting_acquire_resolves_only_after_the_holder_releases() {
    let name = fresh_lock_name("wait");
    let first = TabLock::acquire(&name, false).await.unwrap();

    let (granted_sender, granted) = oneshot::channel();
    let waiting_name = name.clone();
    spawn_local(async move {
        let lock = TabLock::acquire(&waiting_name, true).await;
        let _ = granted_sender.send(lock);
    });
    let mut granted = Box::pin(granted);
    assert!(
        within(300, &mut granted).await.is_none(),
        "granted while the first holder still has it"
    );

    first.release().await;
    let second = within(2_000, granted).await.expect("granted once released").unwrap();
    let second = second.expect("the waiting acquire succeeds");
    assert_eq!(
        TabLock::acquire(&name, false).await.unwrap_err(),
        TabLockError::HeldElsewhere
    );
    second.release().await;
}

#[wasm_bindgen_test]
async fn an_abandoned_wait_does_not_keep_the_lock() {
    let name = fresh_lock_name("abandoned");
    let first = TabLock::acquire(&name, false).await.unwrap();
    // Gives up waiting: the request stays queued in the browser, and must let
    // go as soon as it is granted.
    assert!(within(100, TabLock::acquire(&name, true)).await.is_none());
    first.release().await;
    let next = within(2_000, TabLock::acquire(&name, true)).await;
    assert!(matches!(next, Some(Ok(_))), "{next:?}");
}

#[wasm_bindgen_test]
async fn without_web_locks_acquire_says_unsupported() {
    let restore = hide_web_locks();
    let result = TabLock::acquire(&fresh_lock_name("unsupported"), false).await;
    restore.call0(&JsValue::NULL).unwrap();
    assert_eq!(result.unwrap_err(), TabLockError::Unsupported);
}

#[wasm_bindgen_test]
async fn a_broadcast_reaches_another_instance_of_the_same_name() {
    let name = fresh_lock_name("broadcast");
    let owner = TabBroadcast::new(&name).unwrap();
    let follower = TabBroadcast::new(&name).unwrap();
    let elsewhere = TabBroadcast::new(&fresh_lock_name("elsewhere")).unwrap();

    let received = Rc::new(RefCell::new(Vec::new()));
    let (first_sender, first) = oneshot::channel::<()>();
    let mut first_sender = Some(first_sender);
    {
        let received = received.clone();
        follower.subscribe(move |text| {
            received.borrow_mut().push(text);
            if let Some(sender) = first_sender.take() {
                let _ = sender.send(());
            }
        });
    }
    let stray = Rc::new(RefCell::new(Vec::new()));
    {
        let stray = stray.clone();
        elsewhere.subscribe(move |text| stray.borrow_mut().push(text));
    }
    let sent_to_self = Rc::new(RefCell::new(Vec::new()));
    {
        let sent_to_self = sent_to_self.clone();
        owner.subscribe(move |text| sent_to_self.borrow_mut().push(text));
    }

    let message = r#"{"event":"channel_ready","channel_id":"0x01"}"#;
    owner.post(message).unwrap();
    within(2_000, first).await.expect("delivered").unwrap();
    sleep_ms(50).await;
    assert_eq!(*received.borrow(), vec![message.to_owned()]);
    assert!(stray.borrow().is_empty(), "another channel name hears nothing");
    assert!(sent_to_self.borrow().is_empty(), "the sender does not hear itself");

    // After close, nothing more arrives and posting fails.
    follower.close();
    owner.post(r#"{"event":"late"}"#).unwrap();
    sleep_ms(50).await;
    assert_eq!(received.borrow().len(), 1);
    owner.close();
    assert!(owner.post("{}").is_err());
}

/// Any script of the origin can post on a wallet's channels; a message
/// longer than any the module sends is dropped before it is copied into
/// the module's memory.
#[wasm_bindgen_test]
async fn a_broadcast_longer_than_the_bound_is_ignored() {
    use fiber_funding::wasm::tab_lock::MAX_MESSAGE_CHARS;
    let name = fresh_lock_name("broadcast-bound");
    let sender = TabBroadcast::new(&name).unwrap();
    let receiver = TabBroadcast::new(&name).unwrap();
    let received = Rc::new(RefCell::new(Vec::<usize>::new()));
    {
        let received = received.clone();
        receiver.subscribe(move |text| received.borrow_mut().push(text.len()));
    }
    let longest = "a".repeat(MAX_MESSAGE_CHARS as usize);
    sender.post(&format!("{longest}a")).unwrap();
    sender.post(&longest).unwrap();
    sleep_ms(300).await;
    assert_eq!(*received.borrow(), vec![MAX_MESSAGE_CHARS as usize]);
    sender.close();
    receiver.close();
}
