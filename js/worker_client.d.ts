import type {
  Backup,
  CancelFundingTxParams,
  CancelFundingTxResult,
  Channel,
  FundingEvent,
  FundingNodeOptions,
  ImportBackupOptions,
  ImportBackupResult,
  OpenChannelResult,
  OpenChannelWithExternalFundingParams,
  PendingFunding,
  ShutdownChannelParams,
  SubmitSignedCancelTxParams,
  SubmitSignedCancelTxResult,
  SubmitSignedFundingTxParams,
  SubmitSignedFundingTxResult,
} from "./fiber_funding.js";

/** A FundingNode running in a dedicated Web Worker, driven over postMessage. */
export declare class WorkerFundingNode {
  /** Starts a worker (or uses `worker`) and opens the node in it. */
  static open(options: FundingNodeOptions, init?: { worker?: Worker }): Promise<WorkerFundingNode>;
  /** As FundingNode.follow, without the module's wasm on the page. Returns a function that stops. */
  static follow(dbName: string | null | undefined, callback: (event: FundingEvent) => void): () => void;
  /** As FundingNode.submitToOwner, run in a short-lived worker (or `worker`). */
  static submitToOwner(
    dbName: string | null | undefined,
    params: SubmitSignedFundingTxParams,
    timeoutMs?: number | null,
    init?: { worker?: Worker },
  ): Promise<SubmitSignedFundingTxResult>;
  readonly nodeId: string;
  readonly persistenceGranted: boolean | undefined;
  /** As FundingNode's: found at open, then closed flows' records found unreadable just after. */
  readonly unreadableRecords: { channel_id: string; reason: string }[];
  pendingFundings(): Promise<PendingFunding[]>;
  openChannelWithExternalFunding(params: OpenChannelWithExternalFundingParams): Promise<OpenChannelResult>;
  submitSignedFundingTx(params: SubmitSignedFundingTxParams): Promise<SubmitSignedFundingTxResult>;
  getChannel(channelId: string): Promise<Channel | null>;
  listChannels(): Promise<Channel[]>;
  abandonChannel(channelId: string): Promise<void>;
  cancelFundingTx(params: CancelFundingTxParams): Promise<CancelFundingTxResult>;
  submitSignedCancelTx(params: SubmitSignedCancelTxParams): Promise<SubmitSignedCancelTxResult>;
  shutdownChannel(params: ShutdownChannelParams): Promise<void>;
  forceCloseChannel(channelId: string): Promise<void>;
  exportBackup(): Promise<Backup>;
  importBackup(backup: Backup, options?: ImportBackupOptions): Promise<ImportBackupResult>;
  /** The first listener also gets what happened since open. Returns an unsubscribe function. */
  onEvent(callback: (event: FundingEvent) => void): () => void;
  /** Closes the node (releasing the database to other tabs) and ends the worker. */
  close(): Promise<void>;
}
