"""Fine-tuning the twin: SFT then DPO with TRL + PEFT, as plain entrypoints Dagster launches through Pipes."""
