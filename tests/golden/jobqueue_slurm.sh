#!/usr/bin/env bash

#SBATCH -J l2a-worker
#SBATCH -n 1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH -t 02:00:00

PYTHON -m distributed.cli.dask_worker tcp://SCHEDULER --name dummy-name --nthreads 2 --memory-limit 8.00GiB --nworkers 2 --nanny --death-timeout 120 --lifetime 110m --lifetime-stagger 5m
