// Error classes named as in huggingface_hub, each message saying what to try next.
export class HfHubError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}
export class RepositoryNotFoundError extends HfHubError {}
export class RevisionNotFoundError extends HfHubError {}
export class EntryNotFoundError extends HfHubError {
  /** the commit the Hub looked in (its X-Repo-Commit header), when it said */
  commit?: string;
}
export class GatedRepoError extends HfHubError {}
export class LocalEntryNotFoundError extends HfHubError {}
export class HubConnectionError extends HfHubError {}
