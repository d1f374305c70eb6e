//! Fiber's published code cells on testnet and mainnet, looked up once the
//! node is open rather than before: a boot that waited for the lookup kept
//! every restored flow (and the signed tx a wallet redirect brought back)
//! from the page for as long as the CKB node took to answer, or for good.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures::future::{AbortHandle, Abortable, LocalBoxFuture, Shared};
use futures::FutureExt;

use crate::api::deployment::with_published_cell_deps;
use crate::chain::client::ChainClient;
use crate::primitives::Hash256;
use crate::runtime::driver::Input;
use crate::runtime::InputSender;
use crate::tx::script::ScriptTemplate;

/// A lookup: true when it placed every lock it had to.
type Lookup = Shared<LocalBoxFuture<'static, bool>>;

/// The node's locks as its options name them, and the lookup of the code
/// cells they name none of. Each lookup's answer goes to the driver
/// ([`Input::PublishedCellDeps`]) before the lookup resolves, so a call that
/// waited for it reaches the driver after the deps.
pub struct PublishedCodeLookup {
    chain: Rc<dyn ChainClient>,
    chain_hash: Hash256,
    funding_lock: ScriptTemplate,
    commitment_lock: ScriptTemplate,
    sender: InputSender,
    lookup: RefCell<Option<(Lookup, AbortHandle)>>,
    stopped: Cell<bool>,
}

impl PublishedCodeLookup {
    pub fn new(
        chain: Rc<dyn ChainClient>,
        chain_hash: Hash256,
        funding_lock: ScriptTemplate,
        commitment_lock: ScriptTemplate,
        sender: InputSender,
    ) -> Self {
        Self {
            chain,
            chain_hash,
            funding_lock,
            commitment_lock,
            sender,
            lookup: RefCell::new(None),
            stopped: Cell::new(false),
        }
    }

    /// Stops the lookup under way (its RPC call is dropped, which aborts
    /// the fetch) and any later one: the node closed, and a lookup left
    /// running kept calling its CKB node. What waits for it sees "not placed".
    pub fn stop(&self) {
        self.stopped.set(true);
        if let Some((_, abort)) = self.lookup.borrow().as_ref() {
            abort.abort();
        }
    }

    /// Starts the lookup in the background (at boot).
    pub fn start(&self) {
        wasm_bindgen_futures::spawn_local(self.placed().map(|_| ()));
    }

    /// The lookup under way, or done; a new one when the last could not
    /// place a lock (the CKB node was down, say), so an open or a close
    /// made later tries again rather than going without the code for the
    /// rest of the page's life. Nothing to look up (a dev chain, or deps
    /// given) resolves at once without asking the chain.
    pub fn placed(&self) -> Lookup {
        let mut lookup = self.lookup.borrow_mut();
        if let Some((current, _)) = lookup.as_ref() {
            if current.peek() != Some(&false) || self.stopped.get() {
                return current.clone();
            }
        }
        let chain = self.chain.clone();
        let chain_hash = self.chain_hash;
        let (funding_lock, commitment_lock) = (self.funding_lock.clone(), self.commitment_lock.clone());
        let sender = self.sender.clone();
        let next = async move {
            let (funding_lock, commitment_lock, unplaced) =
                with_published_cell_deps(&*chain, &chain_hash, funding_lock, commitment_lock).await;
            for reason in &unplaced {
                web_sys::console::warn_1(&reason.into());
            }
            // A node closed meanwhile has no driver to tell: nothing to do.
            let _ = sender.unbounded_send(Input::PublishedCellDeps {
                funding_lock,
                commitment_lock,
            });
            unplaced.is_empty()
        };
        let (abort, registration) = AbortHandle::new_pair();
        if self.stopped.get() {
            abort.abort();
        }
        let next = Abortable::new(next, registration)
            .map(|placed| placed.unwrap_or(false))
            .boxed_local()
            .shared();
        *lookup = Some((next.clone(), abort));
        next
    }
}
