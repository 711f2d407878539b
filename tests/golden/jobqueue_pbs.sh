#!/usr/bin/env bash

#PBS -N l2a-worker
#PBS -l select=1:ncpus=4:mem=16GB
#PBS -l walltime=02:00:00

PYTHON -m distributed.cli.dask_worker tcp://SCHEDULER --name dummy-name --nthreads 2 --memory-limit 8.00GiB --nworkers 2 --nanny --death-timeout 120 --lifetime 110m --lifetime-stagger 5m
