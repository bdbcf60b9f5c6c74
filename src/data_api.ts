// The public API of the data side: Hub access, datasets and tokenizers, under their Python names.
export { load_dataset, type LoadDatasetOptions } from "./datasets/load.js";
export { load_from_disk } from "./datasets/disk.js";
export { Dataset, type MapOptions, type FilterOptions, type Row, type Batch } from "./datasets/dataset.js";
export { DatasetDict } from "./datasets/dataset_dict.js";
export { Features, Value, ClassLabel, Sequence, type FeatureType } from "./datasets/features.js";
export { AutoTokenizer } from "./tokenizers/auto.js";
export {
  PreTrainedTokenizerFast, PreTrainedTokenizer, BertTokenizerFast, BertTokenizer,
  type BatchEncoding, type CallOptions, type PadOptions,
} from "./tokenizers/tokenization.js";
export { hf_hub_download, hf_hub_url } from "./hub/download.js";
export { repo_info, list_repo_tree } from "./hub/api.js";
export { HubServer } from "./hub/server.js";
export {
  HfHubError, RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError, GatedRepoError,
  LocalEntryNotFoundError, HubConnectionError,
} from "./hub/errors.js";
