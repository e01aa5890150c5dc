window.YTD.account.part0 = [
  {
    "account": {
      "username": "adaquill",
      "accountDisplayName": "Ada Quill",
      "createdAt": "2015-06-01T09:00:00.000Z"
    }
  }
]