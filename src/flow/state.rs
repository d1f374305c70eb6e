//! Channel states and flags, with upstream Fiber's names and bit values, so a
//! wallet can show the same thing whether it talks to this module or a node.

use serde::{Deserialize, Serialize};

macro_rules! flags {
    ($(#[$doc:meta])* $name:ident { $($flag:ident = $value:expr),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u32);

        impl $name {
            $(pub const $flag: Self = Self($value);)*

            pub fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// The names of the set flags, in bit order.
            pub fn names(self) -> Vec<&'static str> {
                let mut names = Vec::new();
                $(if self.0 & $value != 0 { names.push(stringify!($flag)); })*
                names
            }
        }

        impl std::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }
        }
    };
}

flags!(NegotiatingFundingFlags {
    OUR_INIT_SENT = 1,
    THEIR_INIT_SENT = 1 << 1,
    AWAITING_EXTERNAL_FUNDING = 1 << 2,
});
flags!(CollaboratingFundingTxFlags {
    AWAITING_REMOTE_TX_COLLABORATION_MSG = 1,
    PREPARING_LOCAL_TX_COLLABORATION_MSG = 1 << 1,
    OUR_TX_COMPLETE_SENT = 1 << 2,
    THEIR_TX_COMPLETE_SENT = 1 << 3,
});
flags!(SigningCommitmentFlags {
    OUR_COMMITMENT_SIGNED_SENT = 1,
    THEIR_COMMITMENT_SIGNED_SENT = 1 << 1,
});
flags!(AwaitingTxSignaturesFlags {
    OUR_TX_SIGNATURES_SENT = 1,
    THEIR_TX_SIGNATURES_SENT = 1 << 1,
});
flags!(AwaitingChannelReadyFlags {
    OUR_CHANNEL_READY = 1,
    THEIR_CHANNEL_READY = 1 << 1,
});
flags!(ShuttingDownFlags {
    OUR_SHUTDOWN_SENT = 1,
    THEIR_SHUTDOWN_SENT = 1 << 1,
    DROPPING_PENDING = 1 << 2,
    WAITING_COMMITMENT_CONFIRMATION = 1 << 3,
});
flags!(CloseFlags {
    COOPERATIVE = 1,
    UNCOOPERATIVE_LOCAL = 1 << 1,
    ABANDONED = 1 << 2,
    FUNDING_ABORTED = 1 << 3,
    UNCOOPERATIVE_REMOTE = 1 << 4,
    WAITING_ONCHAIN_SETTLEMENT = 1 << 5,
});

/// Where a channel is. Derived from the facts in its record, never stored on
/// its own, so it cannot disagree with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state_name", content = "state_flags")]
pub enum ChannelState {
    NegotiatingFunding(NegotiatingFundingFlags),
    CollaboratingFundingTx(CollaboratingFundingTxFlags),
    SigningCommitment(SigningCommitmentFlags),
    AwaitingTxSignatures(AwaitingTxSignaturesFlags),
    AwaitingChannelReady(AwaitingChannelReadyFlags),
    ChannelReady,
    ShuttingDown(ShuttingDownFlags),
    Closed(CloseFlags),
}

impl ChannelState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::NegotiatingFunding(_) => "NegotiatingFunding",
            Self::CollaboratingFundingTx(_) => "CollaboratingFundingTx",
            Self::SigningCommitment(_) => "SigningCommitment",
            Self::AwaitingTxSignatures(_) => "AwaitingTxSignatures",
            Self::AwaitingChannelReady(_) => "AwaitingChannelReady",
            Self::ChannelReady => "ChannelReady",
            Self::ShuttingDown(_) => "ShuttingDown",
            Self::Closed(_) => "Closed",
        }
    }

    /// The flag bits, 0 for states without flags.
    pub fn flag_bits(&self) -> u32 {
        match self {
            Self::NegotiatingFunding(f) => f.0,
            Self::CollaboratingFundingTx(f) => f.0,
            Self::SigningCommitment(f) => f.0,
            Self::AwaitingTxSignatures(f) => f.0,
            Self::AwaitingChannelReady(f) => f.0,
            Self::ChannelReady => 0,
            Self::ShuttingDown(f) => f.0,
            Self::Closed(f) => f.0,
        }
    }

    pub fn flag_names(&self) -> Vec<&'static str> {
        match self {
            Self::NegotiatingFunding(f) => f.names(),
            Self::CollaboratingFundingTx(f) => f.names(),
            Self::SigningCommitment(f) => f.names(),
            Self::AwaitingTxSignatures(f) => f.names(),
            Self::AwaitingChannelReady(f) => f.names(),
            Self::ChannelReady => Vec::new(),
            Self::ShuttingDown(f) => f.names(),
            Self::Closed(f) => f.names(),
        }
    }

    /// The funding flow is over: the channel is open, closing or closed.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::ChannelReady | Self::ShuttingDown(_) | Self::Closed(_))
    }
}

impl std::fmt::Display for ChannelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flags = self.flag_names();
        if flags.is_empty() {
            f.write_str(self.name())
        } else {
            write!(f, "{}({})", self.name(), flags.join(" | "))
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn states_print_like_upstream() {
        let state = ChannelState::NegotiatingFunding(NegotiatingFundingFlags::AWAITING_EXTERNAL_FUNDING);
        assert_eq!(state.to_string(), "NegotiatingFunding(AWAITING_EXTERNAL_FUNDING)");
        assert_eq!(state.flag_bits(), 4);
        let both =
            SigningCommitmentFlags::OUR_COMMITMENT_SIGNED_SENT | SigningCommitmentFlags::THEIR_COMMITMENT_SIGNED_SENT;
        assert_eq!(
            ChannelState::SigningCommitment(both).to_string(),
            "SigningCommitment(OUR_COMMITMENT_SIGNED_SENT | THEIR_COMMITMENT_SIGNED_SENT)"
        );
        assert_eq!(CloseFlags::FUNDING_ABORTED.0, 8);
        assert_eq!(CloseFlags::UNCOOPERATIVE_REMOTE.0, 16);
        assert_eq!(CloseFlags::WAITING_ONCHAIN_SETTLEMENT.0, 32);
        assert_eq!(ShuttingDownFlags::WAITING_COMMITMENT_CONFIRMATION.0, 8);
    }
}
