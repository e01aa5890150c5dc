window.YTD.tweets.part0 = [
  {
    "tweet": {
      "id_str": "1744000000000000000",
      "id": "1744000000000000000",
      "full_text": "Measure, then argue. It saves so much time you will wonder what meetings were for.",
      "created_at": "Mon Jan 08 08:15:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "10",
      "retweet_count": "0",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000001000003",
      "id": "1744000000001000003",
      "full_text": "Ship the boring thing first. Then see if anyone needs the exciting thing. Usually they do not.",
      "created_at": "Mon Jan 29 08:22:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "13",
      "retweet_count": "1",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000002000006",
      "id": "1744000000002000006",
      "full_text": "Median latency is a comfort blanket. I alert on p99.",
      "created_at": "Mon Feb 19 08:29:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "16",
      "retweet_count": "2",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000003000009",
      "id": "1744000000003000009",
      "full_text": "Percentiles do not average. I will keep saying this until the dashboards stop doing it.",
      "created_at": "Mon Mar 11 08:36:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "19",
      "retweet_count": "3",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000004000012",
      "id": "1744000000004000012",
      "full_text": "A page that needs no action is a bug in the alert, not in the person who ignored it.",
      "created_at": "Mon Apr 01 08:43:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "22",
      "retweet_count": "4",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000000999999",
      "id": "1744000000000999999",
      "full_text": "RT @pgvector_fan: HNSW indexes in 0.8 support iterative scans for filtered queries",
      "created_at": "Mon Mar 04 10:00:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "entities": {}
    }
  },
  {
    "tweet": {
      "id_str": "1744000000005000015",
      "id": "1744000000005000015",
      "full_text": "Today's pipeline ran three times in CI. Run two: 0 new, 0 updated, 12,408 unchanged. Lovely.",
      "created_at": "Mon Apr 22 08:50:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "25",
      "retweet_count": "5",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000006000018",
      "id": "1744000000006000018",
      "full_text": "Postgres with SKIP LOCKED has been the most reliable queue I have ever run. It is also the most boring. Related facts.",
      "created_at": "Mon May 13 08:57:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "28",
      "retweet_count": "6",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000007000021",
      "id": "1744000000007000021",
      "full_text": "If your \"real time\" requirement is really \"before the 9 o'clock meeting\", you just saved a quarter.",
      "created_at": "Mon Jun 03 09:04:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "31",
      "retweet_count": "0",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000008000024",
      "id": "1744000000008000024",
      "full_text": "Write it down before you fix it. Incident notes take thirty seconds and save the postmortem an hour.",
      "created_at": "Mon Jun 24 09:11:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "34",
      "retweet_count": "1",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000009000027",
      "id": "1744000000009000027",
      "full_text": "My three-line rule: a review comment longer than three lines is a conversation. Have the conversation.",
      "created_at": "Mon Jul 15 09:18:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "37",
      "retweet_count": "2",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000010000030",
      "id": "1744000000010000030",
      "full_text": "Chunk size is a hyperparameter. It is not a personality trait.",
      "created_at": "Mon Aug 05 09:25:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "40",
      "retweet_count": "3",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000011000033",
      "id": "1744000000011000033",
      "full_text": "Golden set of 200 real questions beats 2,000 synthetic ones. Ask me how I know. Actually, do not. It was a long quarter.",
      "created_at": "Mon Aug 26 09:32:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "43",
      "retweet_count": "4",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000012000036",
      "id": "1744000000012000036",
      "full_text": "Deleted 41 dashboards. Nobody noticed. I have never been prouder of a Tuesday.",
      "created_at": "Mon Sep 16 09:39:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "46",
      "retweet_count": "5",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000013000039",
      "id": "1744000000013000039",
      "full_text": "Retry budget: retries may add at most 10% to your request rate. Beyond that they are not retries, they are a denial-of-service attack you wrote yourself.",
      "created_at": "Mon Oct 07 09:46:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "49",
      "retweet_count": "6",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000014000042",
      "id": "1744000000014000042",
      "full_text": "Money in integer pence. I will not be taking questions.",
      "created_at": "Mon Oct 28 09:53:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "52",
      "retweet_count": "0",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000015000045",
      "id": "1744000000015000045",
      "full_text": "Check your embedding model's max sequence length. Mine was 256. My chunks were 512. Half of every chunk was decoration.",
      "created_at": "Mon Nov 18 10:00:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "55",
      "retweet_count": "1",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000016000048",
      "id": "1744000000016000048",
      "full_text": "Timestamps in UTC. Always. British Summer Time is lovely in a park and horrible in a join.",
      "created_at": "Mon Dec 09 10:07:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "58",
      "retweet_count": "2",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000017000051",
      "id": "1744000000017000051",
      "full_text": "A freshness check on every table would have caught most of the incidents I have seen this year. It is one query.",
      "created_at": "Mon Dec 30 10:14:00 +0000 2024",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "61",
      "retweet_count": "3",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000018000054",
      "id": "1744000000018000054",
      "full_text": "Idempotency is a promise to 3 a.m. you. Keep it.",
      "created_at": "Mon Jan 20 10:21:00 +0000 2025",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "64",
      "retweet_count": "4",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000019000057",
      "id": "1744000000019000057",
      "full_text": "Counts matching is not verification. Checksums are.",
      "created_at": "Mon Feb 10 10:28:00 +0000 2025",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "67",
      "retweet_count": "5",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000020000060",
      "id": "1744000000020000060",
      "full_text": "A design doc is one page and five questions. If it needs twenty headings, it is a form, not a doc.",
      "created_at": "Mon Mar 03 10:35:00 +0000 2025",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "70",
      "retweet_count": "6",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000021000063",
      "id": "1744000000021000063",
      "full_text": "Postmortems without villains find more bugs. People make mistakes at a steady rate. Systems decide how much they cost.",
      "created_at": "Mon Mar 24 10:42:00 +0000 2025",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "73",
      "retweet_count": "0",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000022000066",
      "id": "1744000000022000066",
      "full_text": "On call this week. Four pages, four real. Last year the same rotation had fourteen. Deleting alerts works.",
      "created_at": "Mon Apr 14 10:49:00 +0000 2025",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "76",
      "retweet_count": "1",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000023000069",
      "id": "1744000000023000069",
      "full_text": "pgvector HNSW with defaults, recall@10 of 0.97 on 200k vectors. Tune chunking before you tune the index.",
      "created_at": "Mon May 05 10:56:00 +0000 2025",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "79",
      "retweet_count": "2",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000024000072",
      "id": "1744000000024000072",
      "full_text": "Rerankers: +3 points of hit rate, +0.09 MRR, +120 ms. Worth it for us. Measure yours.",
      "created_at": "Mon May 26 11:03:00 +0000 2025",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "82",
      "retweet_count": "3",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000025000075",
      "id": "1744000000025000075",
      "full_text": "Every embedding row should store the model version. Ask me how I learned that. Six days. It took six days.",
      "created_at": "Mon Jun 16 11:10:00 +0000 2025",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "85",
      "retweet_count": "4",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000026000078",
      "id": "1744000000026000078",
      "full_text": "The best question in an on-call handover: what would have made this week easier?",
      "created_at": "Mon Jul 07 11:17:00 +0000 2025",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "88",
      "retweet_count": "5",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000027000081",
      "id": "1744000000027000081",
      "full_text": "Backfilled 730 partitions in 6 h 10 min. Three failed. Reran three. Partitions are how you keep your weekends.",
      "created_at": "Mon Jul 28 11:24:00 +0000 2025",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "91",
      "retweet_count": "6",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000028000084",
      "id": "1744000000028000084",
      "full_text": "Cost per query was 0.4p. Generation was 0.29p of it. The vector database everyone worried about: 0.02p.",
      "created_at": "Mon Aug 18 11:31:00 +0000 2025",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "94",
      "retweet_count": "0",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  },
  {
    "tweet": {
      "id_str": "1744000000029000087",
      "id": "1744000000029000087",
      "full_text": "New team, first week: inventory from the scheduler, not the wiki. The wiki said 22 pipelines. The scheduler said 31.",
      "created_at": "Mon Sep 08 11:38:00 +0000 2025",
      "lang": "en",
      "retweeted": false,
      "favorite_count": "97",
      "retweet_count": "1",
      "entities": {
        "hashtags": [],
        "urls": []
      }
    }
  }
]